#!/usr/bin/env bash
# Seeding rate (generate + real ZTDF, no store) with the OpenSSL reference measured in the same run.
# Usage: scripts/bench-seed.sh [seed_rate options, e.g. --count 5000 --runs 7]
#        (set CARGO_TARGET_DIR to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== machine"
uname -srm
grep -m1 'model name' /proc/cpuinfo || true
echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== OpenSSL reference ($(openssl version))"
openssl speed -seconds 2 rsa2048 ecdhp256 2>/dev/null | grep -E '^(rsa 2048| 256 bits ecdh)'

echo "== dive-seed"
cargo build --release -q -p dive-seed --example seed_rate
"${CARGO_TARGET_DIR:-target}/release/examples/seed_rate" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
