#!/usr/bin/env bash
# Requests per second of the list page (or of $WALL_ROUTE, e.g. dashboard/bundle) for each binary, alternated round by round (so that the
# machine's drift hits all alike), with the environment ENV added (e.g. CACHE_L1_MAX_MB=0: L2 hits).
#   bench/micro/wall.sh ROUNDS ENV binary...
# Reads the database DATABASE_URL names (default aishacrm_callgrind; seed it with `aishacrm seed`).
set -u
cd "$(dirname "$0")/../.."
rounds=$1; shift; envspec=$1; shift
command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_callgrind} JWT_SECRET=bench-secret REDIS_URL=redis://127.0.0.1:6379/0
tenant=$(psql "$DATABASE_URL" -Atc "SELECT tenant_id FROM opportunities GROUP BY tenant_id ORDER BY count(*) DESC, tenant_id LIMIT 1")
token=$(RUST_LOG=warn "$1" token --tenant "$tenant")
url="http://127.0.0.1:18351/api/v2/${WALL_ROUTE:-opportunities}"
for r in $(seq 1 $rounds); do
  for bin in "$@"; do
    env CACHE_KEY_PREFIX="aishacrm-wall-$$" BIND=127.0.0.1:18351 RUST_LOG=warn $envspec $bin serve >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18351/health/live && break; sleep 0.1; done
    wrk -t2 -c32 -d2s -H "Authorization: Bearer $token" "$url" >/dev/null
    curl -sf -o /dev/null -H "Authorization: Bearer $token" "$url" || { echo "wall.sh: $url does not answer 200" >&2; exit 1; }
    out=$(wrk -t2 -c32 -d8s --latency -H "Authorization: Bearer $token" "$url")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "round $r $(basename $bin) $rps req/s p99 $p99"
    kill $pid; wait $pid 2>/dev/null
  done
done
redis-cli --scan --pattern "aishacrm-wall-$$:*" | xargs -r redis-cli unlink >/dev/null
