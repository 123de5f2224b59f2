#!/usr/bin/env bash
# Write throughput of many writers in one tenant (wrk -t2 -c16, POSTs of opportunities), for
# each binary given, alternated over ROUNDS rounds of 10 s in one run:
#   bench/writes.sh ROUNDS OLD_BINARY NEW_BINARY
# Each round writes into a fresh tenant of $DATABASE_URL (default: the aishacrm_writes database,
# created and migrated by the last binary), with the shared Redis under a prefix of its own.
# Ends with `aggregates verify` (when the last binary has it). Writes bench/results/writes-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?rounds}
shift
[ $# -ge 1 ] || { echo "bench/writes.sh: name at least one binary" >&2; exit 2; }
command -v wrk >/dev/null || apt-get install -y wrk
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_writes?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret} REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export CACHE_KEY_PREFIX="aishacrm-writes-$$" BIND=127.0.0.1:18183 RUST_LOG=warn
last=${!#}
"$last" migrate
script=$(mktemp --suffix .lua)
server=
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  rm -f "$script"
  redis-cli -u "$REDIS_URL" --scan --pattern "$CACHE_KEY_PREFIX:*" |
    xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
}
trap cleanup EXIT

out="bench/results/writes-$(date -u +%Y%m%d-%H%M%S).md"
{
  echo "# Single-tenant write throughput (wrk -t2 -c16, 10 s per binary per round)"
  echo
  echo "| round | binary | writes/s | p50 ms | p99 ms | non-201 |"
  echo "|---|---|---|---|---|---|"
} >"$out"
for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    tenant=$(cat /proc/sys/kernel/random/uuid)
    { echo "TOKEN = \"$("$bin" token --tenant "$tenant")\""; cat bench/wrk/writes.lua; } >"$script"
    "$bin" serve &
    server=$!
    for _ in $(seq 1 100); do
      curl -fs "http://$BIND/health/ready" >/dev/null && break
      sleep 0.1
    done
    result=$(wrk -t2 -c16 -d10s --latency -s "$script" "http://$BIND" 2>/tmp/writes-errors.$$)
    errors=$(wc -l </tmp/writes-errors.$$)
    # which answers they were (429: past the tenant's share of the pool for 250 ms)
    [ "$errors" -eq 0 ] || sort /tmp/writes-errors.$$ | uniq -c >&2
    rm -f /tmp/writes-errors.$$
    rate=$(echo "$result" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$result" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$result" | awk '$1 == "99%" {print $2}')
    echo "| $round | $(basename "$bin") | $rate | $p50 | $p99 | $errors |" | tee -a "$out"
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
  done
done
if "$last" aggregates verify >>"$out" 2>&1; then :; else echo "aggregates verify FAILED" | tee -a "$out"; fi
echo "wrote $out"
