#!/usr/bin/env bash
# Issue 7's deployment figure: hub + FRA + DEU deployed (5,000 seeded documents each), the two
# spokes concurrently, each linked with the hub by its deployment, then both links verified with
# real brokered logins. Then federated-search latency from the hub across the three instances:
# all up; DEU stopped (`spoke down`: connection refused); DEU's API hanging (SIGSTOP: the socket
# accepts, nothing answers), where each search must cost at most the partner timeout until DEU's
# breaker opens.
# Usage: scripts/bench-federation.sh [SECONDS]   (set CARGO_TARGET_DIR to reuse a build)
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

SECS="${1:-10}"
bench() { "$DIVE" --home "$HOME_DIR" bench federated-search --duration "$SECS" "$@"; }
echo; echo "== federated search, all three instances up"
bench
echo; echo "== DEU's API hanging (SIGSTOP), timeoutMs 500: DEU's breaker opens after 3 timeouts"
deu_api=$("$DIVE" --home "$HOME_DIR" spoke status DEU --json | python3 -c 'import json,sys; print(next(s["pid"] for s in json.load(sys.stdin)["supervisor"]["services"] if s["name"]=="api"))')
kill -STOP "$deu_api"
bench --timeout-ms 500
kill -CONT "$deu_api"
echo; echo "== DEU stopped (spoke down)"
"$DIVE" --home "$HOME_DIR" -q spoke down DEU >/dev/null
sleep 31 # let DEU's breaker at the hub (30 s cooldown) close again, so the run starts fresh
bench
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
