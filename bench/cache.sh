#!/usr/bin/env bash
# Cache figures on the seeded benchmark database (see bench/uncached.sh, which seeds it):
#   - sequential latency of the list route: L1 hit, L2 hit (L1 off), miss (Cache-Control: no-cache)
#   - throughput of L1 hits with the contract's hit logging on and off (wrk, 64 connections)
#   - cross-instance invalidation latency (bench/invalidation.py)
# usage: bench/cache.sh [requests-per-route] [wrk-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-500}
seconds=${2:-10}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_bench?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export CACHE_KEY_PREFIX="aishacrm-bench-$$"
bin=target/release/aishacrm
cargo build --release --quiet
tenant=$(psql "$DATABASE_URL" -Atc \
  "SELECT tenant_id FROM opportunities GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 1")
[ -n "$tenant" ] || { echo "seed first: bench/uncached.sh" >&2; exit 1; }
token=$("$bin" token --tenant "$tenant")

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { # port, extra env...
  local port=$1; shift
  env BIND=127.0.0.1:$port "$@" "$bin" serve 2>"/tmp/aishacrm-bench-$port.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health/ready" | grep -q '"redis":"up"' && return 0
    sleep 0.1
  done
  echo "server on $port did not become ready" >&2; exit 1
}
start 18191 RUST_LOG=info                      # L1 + L2, hit logging on
start 18192 RUST_LOG=info CACHE_L1_MAX_MB=0    # L2 only
start 18193 RUST_LOG=warn                      # L1 + L2, hit logging off

route="/api/v2/opportunities"
latency() { # label, port, extra curl args...
  local label=$1 port=$2; shift 2
  for _ in $(seq 1 "$requests"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$@" \
      -H "Authorization: Bearer $token" "http://127.0.0.1:$port$route"
  done | sort -k2,2 -g | awk -v label="$label" '
    $1 != 200 { errors++ }
    { t[NR] = $2 * 1000 }
    END { printf "%-34s p50 %6.3f ms   p99 %6.3f ms%s\n", label, t[int(NR*0.5)], t[int(NR*0.99)], errors ? "  errors " errors : "" }'
}
curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:18191$route"
curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:18192$route"
echo "list route, $requests sequential requests each (curl time_total, includes curl's connect)"
latency "L1 hit" 18191
latency "L2 hit (L1 off)" 18192
latency "miss (Cache-Control: no-cache)" 18191 -H "Cache-Control: no-cache"

echo "L1-hit throughput, wrk -t2 -c64 -d${seconds}s"
for port in 18191 18193; do
  label=$([ $port = 18191 ] && echo "hit logging on " || echo "hit logging off")
  wrk -t2 -c64 -d"${seconds}s" --latency -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port$route" | awk -v label="$label" '
      /Requests\/sec/ { rps = $2 } / 50%/ { p50 = $2 } / 99%/ { p99 = $2 } /Non-2xx/ { errors = $NF }
      END { printf "%s  %10s req/s   p50 %s   p99 %s%s\n", label, rps, p50, p99, errors ? "  non-2xx " errors : "" }'
done

python3 bench/invalidation.py 127.0.0.1:18191 127.0.0.1:18193 "$token" 200
