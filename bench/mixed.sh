#!/usr/bin/env bash
# Mixed traffic over two replicas (scenario 6 of bench/run.sh: wrk per replica, the Lua request
# mix, the stale checker), for each binary given, alternated over ROUNDS rounds in one run:
#   bench/mixed.sh ROUNDS OLD_BINARY NEW_BINARY
# On the benchmark database of bench/run.sh (migrated by the last binary, seeded once if it
# holds fewer than 1,000,000 opportunities); each run starts fresh replicas under a Redis prefix
# of its own and is followed by `aggregates verify` (of the last binary). Writes
# bench/results/mixed-<date>.md and .json.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?rounds}
shift
[ $# -ge 1 ] || { echo "bench/mixed.sh: name at least one binary" >&2; exit 2; }
command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_bench?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret} REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export BENCH_RUN_ID=$$ CACHE_KEY_PREFIX="aishacrm-mixed-$$" BENCH_STARTED=$(date +%s)
last=${!#}
RUST_LOG=warn "$last" migrate
rows=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM opportunities")
if [ "$rows" -lt 1000000 ]; then
  echo "seeding 20 tenants x 50,000 opportunities (once; later runs reuse them)"
  RUST_LOG=info "$last" seed --tenants 20 --per-tenant 50000 >/dev/null
fi

name=mixed-$(date -u +%Y%m%d-%H%M%S)
work=bench/results/$name.tmp
mkdir -p "$work"
cleanup() {
  local status=$?
  set +e
  # whatever run.py could not stop: by PID, only the binaries named and wrk
  if [ -f "$work/pids" ]; then
    while read -r pid; do
      kill -0 "$pid" 2>/dev/null && grep -qa -e aishacrm -e wrk "/proc/$pid/cmdline" && kill "$pid"
    done <"$work/pids"
  fi
  redis-cli -u "$REDIS_URL" --scan --pattern "$CACHE_KEY_PREFIX*" |
    xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
  psql "$DATABASE_URL" -qAtc "DELETE FROM leads WHERE source = 'bench-mixed-$BENCH_RUN_ID'" >/dev/null
  psql "$DATABASE_URL" -qAtc "DELETE FROM opportunities WHERE name = 'bench-probe $BENCH_RUN_ID'" >/dev/null
  [ "$status" -ne 0 ] || rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
python3 bench/run.py --name "$name" --work "$work" --mixed-ab "$@" --rounds "$rounds"
echo "wrote bench/results/$name.md"
