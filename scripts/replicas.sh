#!/usr/bin/env bash
# N replicas of aishacrm on loopback behind nginx (round robin), without Docker.
#   scripts/replicas.sh [N]     start N replicas (default 2) and nginx; prints what to try
#   scripts/replicas.sh stop    stop everything it started (by PID)
# Ports: nginx on $PORT (default 18080), replica i on $PORT+i. Every replica shares one
# JWT_SECRET, PostgreSQL ($DATABASE_URL) and Redis ($REDIS_URL or $REDIS_CLUSTER_NODES).
# Logs and PID files live in $RUN_DIR (default /tmp/aishacrm-replicas).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${RUN_DIR:-/tmp/aishacrm-replicas}
port=${PORT:-18080}
bin=target/release/aishacrm

stop() {
  [ -d "$run_dir" ] || return 0
  for pidfile in "$run_dir"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null && echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
    rm -f "$pidfile"
  done
}

if [ "${1:-}" = stop ]; then
  stop
  exit 0
fi
replicas=${1:-2}
[[ "$replicas" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N] | stop" >&2; exit 2; }

if ! command -v nginx >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
fi
stop
mkdir -p "$run_dir"
cargo build --release --quiet

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aishacrm}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export JWT_SECRET=${JWT_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
export RUST_LOG=${RUST_LOG:-info}
echo "$JWT_SECRET" > "$run_dir/jwt_secret"
"$bin" migrate

upstreams=""
for i in $(seq 1 "$replicas"); do
  replica_port=$((port + i))
  BIND=127.0.0.1:$replica_port "$bin" serve >"$run_dir/replica-$i.log" 2>&1 &
  echo $! >"$run_dir/replica-$i.pid"
  upstreams+="        server 127.0.0.1:$replica_port;"$'\n'
done
for i in $(seq 1 "$replicas"); do
  replica_port=$((port + i))
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$replica_port/health/ready" >/dev/null && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$replica_port/health/ready" >/dev/null \
    || { echo "replica $i did not become ready; see $run_dir/replica-$i.log" >&2; stop; exit 1; }
done

cat >"$run_dir/nginx.conf" <<CONF
worker_processes 1;
pid $run_dir/nginx.pid.nginx;
error_log $run_dir/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    upstream aishacrm {
$upstreams        keepalive 32;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://aishacrm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
CONF
nginx -c "$run_dir/nginx.conf" -p "$run_dir" -g 'daemon off;' >"$run_dir/nginx.log" 2>&1 &
echo $! >"$run_dir/nginx.pid"
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$port/health/live" >/dev/null && break
  sleep 0.1
done

tenant=00000000-0000-4000-8000-000000000001
token=$("$bin" token --tenant "$tenant")
cat <<INFO
$replicas replicas on ports $((port + 1))..$((port + replicas)), nginx on http://127.0.0.1:$port
JWT_SECRET is in $run_dir/jwt_secret; an admin token for tenant $tenant:
  TOKEN=$token

Watch every replica's cache log lines:
  tail -f $run_dir/replica-*.log | grep --line-buffered Cache
Read through the balancer (round robin: the first read on each replica is a MISS or an L2 HIT):
  for i in 1 2 3 4; do curl -s -D - -o /dev/null http://127.0.0.1:$port/api/v2/accounts/count -H "Authorization: Bearer \$TOKEN" | grep -i x-cache; done
Write once; every other replica logs "[Cache] Invalidated: accounts for tenant $tenant (remote)":
  curl -s -XPOST http://127.0.0.1:$port/api/v2/accounts -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"name": "Acme"}'
Stop everything:
  scripts/replicas.sh stop
INFO
