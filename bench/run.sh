#!/usr/bin/env bash
# The benchmark harness, one command:   bench/run.sh
#
# Builds the release binaries (the service and examples/ceiling.rs), seeds the benchmark database
# once (20 tenants x 50,000 opportunities, as bench/uncached.sh; reused afterwards), then runs
# bench/run.py, which starts the servers on 127.0.0.1:18300-18399, drives them with wrk and the
# Python checkers and writes bench/results/<name>.md (table), .json (raw figures) and .svg
# (chart). <name> is the short commit and the date. Every process started is stopped by PID; the
# run's Redis keys (its own CACHE_KEY_PREFIX) and the rows it wrote are removed at the end.
# See bench/README.md for the scenarios and the settings (BENCH_SECONDS, BENCH_CONNECTIONS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
export BENCH_STARTED=$started
# the load of the machine before this script adds its own (the build, then the servers and wrk)
BENCH_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD_BEFORE
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm_bench?sslmode=disable}
export JWT_SECRET=${JWT_SECRET:-bench-secret}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export BENCH_RUN_ID=$$
export CACHE_KEY_PREFIX="aishacrm-bench-$$"
bin=target/release/aishacrm

if ! command -v wrk >/dev/null; then
  echo "bench/run.sh: installing wrk" >&2
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get install -y wrk || { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y wrk; }
fi
for tool in cargo psql redis-cli python3 wrk; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing" >&2; exit 1; }
done

# the commit that is built (recorded now: the tree may move while the run goes on)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
dirty=0
[ -z "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] || dirty=1
export BENCH_COMMIT=$commit BENCH_DIRTY=$dirty
name=${BENCH_NAME:-$commit-$(date +%Y%m%d-%H%M%S)}
results=bench/results
work=$results/$name.tmp
mkdir -p "$work"

runner=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
    kill "$runner" # run.py stops its own processes on SIGTERM
    wait "$runner" 2>/dev/null
  fi
  # whatever run.py started and could not stop (it was killed hard): by PID, only our binaries
  if [ -f "$work/pids" ]; then
    while read -r pid; do
      if kill -0 "$pid" 2>/dev/null &&
        grep -qa -e target/release/aishacrm -e target/release/examples/ceiling -e wrk "/proc/$pid/cmdline"; then
        echo "bench/run.sh: stopping leftover process $pid" >&2
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      fi
    done <"$work/pids"
  fi
  # this run's Redis keys (never FLUSHDB: the Redis is shared)
  redis-cli -u "$REDIS_URL" --scan --pattern "$CACHE_KEY_PREFIX:*" |
    xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
  # the rows this run wrote (the probe is normally deleted through the API already)
  psql "$DATABASE_URL" -qAtc "DELETE FROM leads WHERE source = 'bench-mixed-$BENCH_RUN_ID'" >/dev/null
  psql "$DATABASE_URL" -qAtc "DELETE FROM opportunities WHERE name = 'bench-probe $BENCH_RUN_ID'" >/dev/null
  if [ "$status" -eq 0 ]; then
    rm -rf "$work"
  else
    echo "bench/run.sh: FAILED (exit $status); logs and wrk outputs kept in $work" >&2
  fi
  echo "bench/run.sh: wall time $(($(date +%s) - started)) s" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== building release binaries"
cargo build --release --bin aishacrm --example ceiling

echo "== benchmark database"
RUST_LOG=warn "$bin" migrate
rows=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM opportunities")
if [ "$rows" -lt 1000000 ]; then
  echo "seeding 20 tenants x 50,000 opportunities (once; later runs reuse them)"
  RUST_LOG=info "$bin" seed --tenants 20 --per-tenant 50000 >/dev/null
fi
echo "$rows opportunities in $DATABASE_URL"

echo "== measuring ($name)"
python3 bench/run.py --name "$name" --work "$work" --results "$results" &
runner=$!
wait "$runner"
runner=
