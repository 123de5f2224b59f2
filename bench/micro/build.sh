#!/usr/bin/env bash
# Builds the committed tree and each named variant of bench/micro/variants.py into
# bench/results/micro/bin-<name> (bin-base: the tree as committed), restoring src/ after each.
#   bench/micro/build.sh nomemo sharedl2 envlogger ttlmap
# Do not edit src/ while it runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/results/micro
mkdir -p "$out"
git diff --quiet -- src || { echo "bench/micro/build.sh: src/ has uncommitted changes" >&2; exit 1; }
trap 'git checkout -- src' EXIT
cargo build --release --bin aishacrm
cp target/release/aishacrm "$out/bin-base"
for variant in "$@"; do
  python3 bench/micro/variants.py "$variant"
  cargo build --release --bin aishacrm
  cp target/release/aishacrm "$out/bin-$variant"
  git checkout -- src
done
cargo build --release --bin aishacrm
