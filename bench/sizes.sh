#!/usr/bin/env bash
# Miss latency (cache off) of count, stats and bundle for one tenant at 1,000, 50,000 and
# 1,000,000 opportunities, for each binary given, in one run:
#   bench/sizes.sh [requests-per-route] OLD_BINARY NEW_BINARY ...
# e.g. an A/B against the previous commit's binary (build it from a worktree of that commit).
# Seeds three tenants of those sizes into $DATABASE_URL (default: the aishacrm_sizes database)
# once, with the last binary given, and reuses them. Requests are sequential (one connection),
# timed by curl; REDIS_URL=none and CACHE_ENABLED=false, so every answer is computed. Writes
# bench/results/sizes-<date>.md, ending with `aggregates verify` of the seeded tenants.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:?requests per route}
shift
[ $# -ge 1 ] || { echo "bench/sizes.sh: name at least one binary" >&2; exit 2; }
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_sizes?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret} REDIS_URL=none CACHE_ENABLED=false
export BIND=127.0.0.1:18182 RUST_LOG=warn
seeder=${!#}
"$seeder" migrate
sizes=(1000 50000 1000000)
declare -A tenant
for size in "${sizes[@]}"; do
  found=$(psql "$DATABASE_URL" -Atc \
    "SELECT tenant_id FROM opportunities GROUP BY tenant_id HAVING count(*) = $size LIMIT 1")
  if [ -z "$found" ]; then
    echo "seeding a tenant of $size opportunities" >&2
    found=$(RUST_LOG=warn "$seeder" seed --tenants 1 --per-tenant "$size" | tail -1)
  fi
  tenant[$size]=$found
done

out="bench/results/sizes-$(date -u +%Y%m%d-%H%M%S).md"
{
  echo "# Miss latency by tenant size ($requests sequential requests per route, cache off)"
  echo
  echo "| binary | route | p50 ms at 1,000 | p50 ms at 50,000 | p50 ms at 1,000,000 | 1,000,000 ÷ 1,000 |"
  echo "|---|---|---|---|---|---|"
} >"$out"

p50() { # binary-independent: the server on $BIND answers
  local token=$1 route=$2
  for _ in $(seq 1 10); do # warm PostgreSQL's buffers and the plan cache
    curl -s -o /dev/null -H "Authorization: Bearer $token" "http://$BIND/api/v2/$route"
  done
  for _ in $(seq 1 "$requests"); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "http://$BIND/api/v2/$route"
  done | sort -g | awk '{ t[NR] = $1 * 1000 } END { printf "%.2f", t[int((NR + 1) / 2)] }'
}

for bin in "$@"; do
  "$bin" serve &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -fs "http://$BIND/health/ready" >/dev/null && break
    sleep 0.1
  done
  for route in opportunities/count "opportunities/count?stage=proposal" opportunities/stats \
    accounts/count dashboard/bundle; do
    row="| $(basename "$bin") | \`$route\`"
    first=
    last=
    for size in "${sizes[@]}"; do
      token=$("$bin" token --tenant "${tenant[$size]}")
      last=$(p50 "$token" "$route")
      first=${first:-$last}
      row="$row | $last"
    done
    row="$row | $(echo "$last / $first" | bc -l | xargs printf '%.2f') |"
    echo "$row" | tee -a "$out"
  done
  kill "$server"
  wait "$server" 2>/dev/null || true
done
if "$seeder" aggregates verify >>"$out" 2>&1; then :; else echo "aggregates verify FAILED" | tee -a "$out"; fi
echo "wrote $out"
