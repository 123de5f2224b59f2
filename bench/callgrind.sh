#!/usr/bin/env bash
# Instructions per request of one cached route, counted by valgrind's callgrind: a figure that,
# unlike req/s on a shared 2-core machine, does not move with whatever else the machine is doing.
#
#   bench/callgrind.sh [ceiling|l1|l1-logging|l2]...     (default: all four)
#   BINARY=/tmp/variant bench/callgrind.sh l1             (a binary built elsewhere, e.g. an A/B)
#   CALLGRIND_ROUTE=dashboard/bundle bench/callgrind.sh l1  (another cached route than the list page)
#
# Each target runs under callgrind with one worker on 127.0.0.1:18350, is warmed up with 3 s of
# wrk, has its counters zeroed, then serves 10 s of `wrk -t1 -c4` on the list page of the largest
# tenant of the benchmark database (bench/run.sh seeds it). The total instructions of that window
# over the requests wrk completed is the cost of one request: everything the process does for it
# (HTTP parsing, routing, auth, cache lookup, metrics, logging, writing the answer), not the
# kernel's work. Profiles are kept in bench/results/callgrind/<target>.out for callgrind_annotate.
# memcpy and memset count one instruction per byte-sized step under valgrind, so the 19 KB body
# copy weighs far more here than in wall time; compare targets, not absolute values.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_bench?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export CACHE_KEY_PREFIX="aishacrm-callgrind-$$"
port=18350
out=bench/results/callgrind
mkdir -p "$out"
for tool in valgrind callgrind_control callgrind_annotate wrk curl psql redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench/callgrind.sh: $tool is missing" >&2; exit 1; }
done
bin=${BINARY:-target/release/aishacrm}
[ -n "${BINARY:-}" ] || cargo build --release --bin aishacrm --example ceiling

tenant=$(psql "$DATABASE_URL" -Atc \
  "SELECT tenant_id FROM opportunities GROUP BY tenant_id ORDER BY count(*) DESC, tenant_id LIMIT 1")
[ -n "$tenant" ] || { echo "bench/callgrind.sh: seed the benchmark database first (bench/run.sh)" >&2; exit 1; }
token=$(RUST_LOG=warn "$bin" token --tenant "$tenant")
url="http://127.0.0.1:$port/api/v2/${CALLGRIND_ROUTE:-opportunities}"
page=$(mktemp)

pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$page"
  redis-cli -u "$REDIS_URL" --scan --pattern "$CACHE_KEY_PREFIX:*" |
    xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
}
trap cleanup EXIT

# The ceiling answers the real list page, fetched from a plain run of the service.
BIND=127.0.0.1:$port RUST_LOG=warn "$bin" serve 2>/dev/null &
pid=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health/live" && break; sleep 0.1; done
curl -sf -o "$page" -H "Authorization: Bearer $token" "$url" # a miss
etag=$(curl -sf -o "$page" -D - -H "Authorization: Bearer $token" "$url" |
  awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

measure() {
  local target=$1 profile="$out/$1.out"
  rm -f "$profile" "$profile".*
  local -a env=(BIND=127.0.0.1:$port WORKERS=1 RUST_LOG=warn)
  local -a argv=("$bin" serve)
  case $target in
    # with the ETag and X-Cache headers of an L1 hit, as in bench/run.sh
    ceiling) env+=(CEILING_BODY_FILE="$page" CEILING_ETAG="$etag") argv=(target/release/examples/ceiling) ;;
    l1) ;;
    l1-logging) env+=(RUST_LOG=info) ;;
    l2) env+=(CACHE_L1_MAX_MB=0) ;;
    *) echo "bench/callgrind.sh: unknown target $target" >&2; exit 2 ;;
  esac
  env "${env[@]}" valgrind --tool=callgrind --callgrind-out-file="$profile" "${argv[@]}" \
    >"$out/$target.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "$url" && break; sleep 0.2; done
  wrk -t1 -c4 -d3s -H "Authorization: Bearer $token" "$url" >/dev/null
  callgrind_control --zero "$pid" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c4 -d10s -H "Authorization: Bearer $token" "$url" |
    awk '/requests in/ {print $1}')
  callgrind_control --dump "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  local total
  total=$(callgrind_annotate "$profile.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  mv "$profile.1" "$profile"
  rm -f "$profile".*
  printf '%-11s %8d requests  %7.1fk instructions per request\n' "$target" "$requests" \
    "$(echo "$total / $requests / 1000" | bc -l)"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ceiling l1 l1-logging l2)
for target in "${targets[@]}"; do
  measure "$target"
done
