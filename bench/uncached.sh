#!/usr/bin/env bash
# Uncached latency of list, count and stats for the largest tenant of a seeded database.
#   bench/uncached.sh [requests-per-route]
# Seeds 20 tenants x 50,000 opportunities (1,000,000, plus 200,000 of each other entity) into
# $DATABASE_URL (default: the aishacrm_bench database) once, and reuses it afterwards.
# Requests are sequential (one connection), timed by curl; the cache is off (REDIS_URL=none, and
# this build has no cache yet).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_bench?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret} REDIS_URL=none CACHE_ENABLED=false
export BIND=127.0.0.1:18181 RUST_LOG=warn
bin=target/release/aishacrm

cargo build --release --quiet
"$bin" migrate
rows=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM opportunities")
if [ "$rows" -lt 1000000 ]; then
  echo "seeding 20 tenants x 50,000 opportunities"
  RUST_LOG=info "$bin" seed --tenants 20 --per-tenant 50000 >/dev/null
fi
tenant=$(psql "$DATABASE_URL" -Atc \
  "SELECT tenant_id FROM opportunities GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 1")
token=$("$bin" token --tenant "$tenant")

"$bin" serve &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://$BIND/health/ready" >/dev/null && break
  sleep 0.1
done

echo "tenant $tenant, $requests sequential requests per route"
printf '%-45s %9s %9s\n' route p50_ms p99_ms
for route in opportunities opportunities/count opportunities/stats \
  "opportunities?stage=proposal" "opportunities/count?stage=proposal" \
  "opportunities?q=acme" "opportunities/count?q=acme" dashboard/bundle; do
  for _ in $(seq 1 10); do # warm PostgreSQL's buffers and the plan cache
    curl -s -o /dev/null -H "Authorization: Bearer $token" "http://$BIND/api/v2/$route"
  done
  for _ in $(seq 1 "$requests"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
      -H "Authorization: Bearer $token" "http://$BIND/api/v2/$route"
  done | sort -k2,2 -g | awk -v route="$route" '
    $1 != 200 { errors++ }
    { t[NR] = $2 * 1000 }
    END {
      n = NR
      printf "%-45s %9.2f %9.2f%s\n", route, t[int(n * 0.5)], t[int(n * 0.99)], errors ? "  errors " errors : ""
    }'
done
