#!/usr/bin/env bash
# ZTDF benchmarks with the OpenSSL reference figures measured in the same run.
# Usage: scripts/bench-ztdf.sh [criterion filter]   (set CARGO_TARGET_DIR to reuse a build)
#
# Both sides are per core and in CPU time: `openssl speed` counts user CPU seconds, and the
# dive-ztdf bench measures its thread's CPU time (user + system). On a machine shared with other
# work, wall-clock figures would compare a contended process with an uncontended measure; CPU
# time is still somewhat inflated by contention (caches, SMT siblings) for both, so the ratios
# are the figures to keep. The OpenSSL reference runs before and after the bench.
set -euo pipefail
cd "$(dirname "$0")/.."
filter="${1:-}"

openssl_ref() {
  echo "== OpenSSL reference ($(openssl version)), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  openssl speed -seconds 3 -bytes 16384 -evp aes-256-gcm 2>/dev/null | tail -n 1
  openssl speed -seconds 3 rsa2048 2>/dev/null | grep -E '^rsa 2048'
  openssl speed -seconds 3 ecdhp256 2>/dev/null | grep -E 'ecdh \(nistp256\)'
}

echo "== machine"
uname -srm
grep -m1 'model name' /proc/cpuinfo || true
nproc

openssl_ref
echo "== dive-ztdf (criterion, CPU time), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p dive-ztdf --bench ztdf -- --noplot ${filter:+"$filter"} 2>&1 |
  grep -E '^(payload|create|offline)|time:|thrpt:' | grep -v '%'
openssl_ref
