#!/usr/bin/env bash
# A/B of the release binary of an older commit against this tree's, in one run:
#   bench/ab.sh [OLD_COMMIT]        (default: the parent of HEAD)
# Builds OLD_COMMIT in a temporary git worktree (sharing this tree's target/ for the
# dependencies; the old binary is copied out before this tree's is built), then runs bench/ab.py:
# L1-hit throughput of the list route in alternating rounds and cross-instance invalidation
# latency, each binary against the same database and Redis. Writes
# bench/results/ab-<old>-<new>-<date>.md and .json. Needs wrk (installed if missing), psql,
# redis-cli and python3, and PostgreSQL and Redis on loopback as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."

old=$(git rev-parse --short "${1:-HEAD~1}")
new=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain -- src Cargo.toml Cargo.lock migrations)" ] || new="$new-dirty"
if ! command -v wrk >/dev/null; then
  apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
fi

scratch=$(mktemp -d)
cleanup() {
  git worktree remove --force "$scratch/tree" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
git worktree add --detach "$scratch/tree" "$old" >/dev/null
# The old tree builds into this tree's target/ (its dependencies are the same crates), so its
# binary is copied out before this tree's own build replaces it.
(cd "$scratch/tree" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release --quiet --bin aishacrm)
cp target/release/aishacrm "$scratch/aishacrm-$old"
cargo build --release --quiet --bin aishacrm
cp target/release/aishacrm "$scratch/aishacrm-$new"

out=bench/results/ab-$old-$new-$(date +%Y%m%d-%H%M%S)
python3 bench/ab.py "$scratch/aishacrm-$old" "$scratch/aishacrm-$new" "$out"
rm -rf "$out.tmp"
echo "bench/ab.sh: wrote $out.md and $out.json"
