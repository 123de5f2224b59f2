#!/usr/bin/env bash
# Fuzzes the service against its own OpenAPI document with schemathesis (from PyPI): every
# operation, with generated valid and invalid input, authenticated with a minted token. Fails on
# any 5xx, any answer that does not match the documented schema (status, headers, body) and any
# error body that is not the contract's error shape.
#   tests/fuzz.sh [max-examples-per-operation]      (default 25; FUZZ_EXAMPLES also works)
# Uses a fresh database (random name, dropped afterwards) on $DATABASE_URL's server and runs the
# service in single-instance mode.
# `positive_data_acceptance` (every schema-valid request must succeed) is left out: cursors are
# opaque server-signed tokens, references must name existing records (422 otherwise), and an
# activity's related_type/related_id come as a pair; none of that is expressible in the schema,
# and all of it answers the contract's documented 4xx.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-${FUZZ_EXAMPLES:-25}}
venv=${FUZZ_VENV:-$HOME/.cache/aishacrm-fuzz-venv}
schemathesis_version=4.32.5

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$schemathesis_version"
fi
cargo build --quiet --bin aishacrm

server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
database="aishacrm_fuzz_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
database_url=$(python3 - "$server_url" "$database" <<'PY'
import sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit(url._replace(path="/" + sys.argv[2])))
PY
)
log=$(mktemp)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  psql "$server_url" -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

export DATABASE_URL=$database_url REDIS_URL=none BIND=127.0.0.1:0 WORKERS=2
export JWT_SECRET="fuzz-$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
export RUST_LOG="warn,aishacrm::startup=info"
target/debug/aishacrm serve 2>"$log" &
pid=$!
address=""
for _ in $(seq 1 100); do
  address=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n 1 | sed 's/listening on //') || true
  [ -n "$address" ] && break
  sleep 0.1
done
[ -n "$address" ] || { cat "$log" >&2; echo "the service did not start" >&2; exit 1; }
tenant=$(python3 -c 'import uuid; print(uuid.uuid4())')
token=$(target/debug/aishacrm token --tenant "$tenant")

"$venv/bin/schemathesis" run "$address/api/v2/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$examples" \
  --seed 20261126 \
  --workers 2 \
  --no-color
