#!/usr/bin/env bash
# Starts, inspects and stops a three-node Collaborate-Stream cluster on loopback.
#
#   deploy/cluster.sh start    # nodes 1..3: HTTP 9201/9211/9221, gRPC 9202/9212/9222
#   deploy/cluster.sh status   # `collabstream cluster status` through node 1
#   deploy/cluster.sh stop     # SIGTERM each node by its pid, wait for a clean exit
#
# Data and logs live in $CLUSTER_DIR (default ./cluster-data). Uses the release binary,
# building it when missing (the first build compiles RocksDB: allow half an hour).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
BIN="${COLLABSTREAM_BIN:-$CARGO_TARGET_DIR/release/collabstream}"
DIR="${CLUSTER_DIR:-$PWD/cluster-data}"
PEERS="1=127.0.0.1:9202,2=127.0.0.1:9212,3=127.0.0.1:9222"

build() {
  if [ ! -x "$BIN" ]; then
    cargo build --release --locked --bin collabstream
  fi
}

start() {
  build
  for n in 1 2 3; do
    local http=$((9191 + 10 * n)) grpc=$((9192 + 10 * n)) pg=$((9193 + 10 * n))
    mkdir -p "$DIR/node-$n"
    if [ -f "$DIR/node-$n/pid" ] && kill -0 "$(cat "$DIR/node-$n/pid")" 2>/dev/null; then
      echo "node $n already running (pid $(cat "$DIR/node-$n/pid"))"
      continue
    fi
    "$BIN" server --node-id "$n" --peers "$PEERS" --data-dir "$DIR/node-$n" \
      --http-listen "127.0.0.1:$http" --grpc-listen "127.0.0.1:$grpc" --pg-listen "127.0.0.1:$pg" \
      >"$DIR/node-$n/stdout.log" 2>"$DIR/node-$n/node.log" &
    echo $! >"$DIR/node-$n/pid"
    echo "node $n: pid $! http://127.0.0.1:$http grpc 127.0.0.1:$grpc psql -h 127.0.0.1 -p $pg (log $DIR/node-$n/node.log)"
  done
  # Wait (bounded) until the nodes elect a leader.
  for _ in $(seq 1 100); do
    if "$BIN" cluster status --endpoint 127.0.0.1:9202 2>/dev/null | grep -q "leader: node"; then
      "$BIN" cluster status --endpoint 127.0.0.1:9202
      return 0
    fi
    sleep 0.2
  done
  echo "no leader after 20 s; see $DIR/node-*/node.log" >&2
  return 1
}

stop() {
  for n in 1 2 3; do
    local pidfile="$DIR/node-$n/pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "node $n killed"; else echo "node $n stopped"; fi
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) "$BIN" cluster status --endpoint "${2:-127.0.0.1:9202}" ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
