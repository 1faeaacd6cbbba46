#!/usr/bin/env bash
# ZTDF benchmarks with the OpenSSL reference figures measured in the same run.
# Usage: scripts/bench-ztdf.sh   (set CARGO_TARGET_DIR to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== machine"
uname -srm
grep -m1 'model name' /proc/cpuinfo || true
nproc

echo "== OpenSSL reference ($(openssl version))"
openssl speed -seconds 3 -bytes 16384 -evp aes-256-gcm 2>/dev/null | tail -n 2
openssl speed -seconds 3 rsa2048 2>/dev/null | grep -E '^(rsa 2048|\s+sign)' | tail -n 2

echo "== dive-ztdf (criterion)"
cargo bench -p dive-ztdf --bench ztdf -- --noplot 2>&1 | grep -E '^(payload|create|offline)|time:|thrpt:'
