#!/usr/bin/env bash
# Starts, inspects and stops a three-node Collaborate-Stream cluster on loopback.
#
#   deploy/cluster.sh start    # nodes 1..3: HTTP 9201/9211/9221, gRPC 9202/9212/9222
#   deploy/cluster.sh status   # `collabstream cluster status` through node 1
#   deploy/cluster.sh logs     # follow the three nodes' logs (Ctrl-C stops following)
#   deploy/cluster.sh stop     # SIGTERM each node by its pid, wait for a clean exit
#
# Data and logs live in $CLUSTER_DIR (default ./cluster-data). Ports are CLUSTER_PORT_BASE
# (default 9191) + 10 x node + 0 (HTTP), 1 (gRPC), 2 (PostgreSQL). Uses the binary of
# scripts/run.sh and scripts/test.sh (cargo's dev profile; CARGO_PROFILE=release for an
# optimised one; COLLABSTREAM_BIN names any other), building it when missing (the first build
# compiles RocksDB: allow half an hour).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
PROFILE="${CARGO_PROFILE:-dev}"
[ "$PROFILE" != dev ] || PROFILE_DIR=debug
BIN="${COLLABSTREAM_BIN:-$CARGO_TARGET_DIR/${PROFILE_DIR:-$PROFILE}/collabstream}"
DIR="${CLUSTER_DIR:-$PWD/cluster-data}"
BASE="${CLUSTER_PORT_BASE:-9191}"
PEERS="1=127.0.0.1:$((BASE + 11)),2=127.0.0.1:$((BASE + 21)),3=127.0.0.1:$((BASE + 31))"

build() {
  if [ ! -x "$BIN" ]; then
    cargo build --locked --profile "$PROFILE" --bin collabstream
  fi
}

start() {
  build
  for n in 1 2 3; do
    local http=$((BASE + 10 * n)) grpc=$((BASE + 1 + 10 * n)) pg=$((BASE + 2 + 10 * n))
    mkdir -p "$DIR/node-$n"
    if [ -f "$DIR/node-$n/pid" ] && alive "$(cat "$DIR/node-$n/pid")"; then
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
    if "$BIN" cluster status --endpoint "127.0.0.1:$((BASE + 11))" 2>/dev/null | grep -q "leader: node"; then
      "$BIN" cluster status --endpoint "127.0.0.1:$((BASE + 11))"
      echo "web UI: http://127.0.0.1:$((BASE + 10))/ui/"
      return 0
    fi
    sleep 0.2
  done
  echo "no leader after 20 s; see $DIR/node-*/node.log" >&2
  return 1
}

# Whether process $1 runs: it exists and is not a zombie (the nodes outlive the shell that
# started them, and whoever inherits them may be slow to reap them).
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat:0:1}" != Z ]
}

stop() {
  for n in 1 2 3; do
    local pidfile="$DIR/node-$n/pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid="$(cat "$pidfile")"
    if alive "$pid"; then
      kill -TERM "$pid"
      for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.2; done
      if alive "$pid"; then kill -KILL "$pid"; echo "node $n killed"; else echo "node $n stopped"; fi
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) "$BIN" cluster status --endpoint "${2:-127.0.0.1:$((BASE + 11))}" ;;
  logs) exec tail -n "${LOG_LINES:-20}" -F "$DIR"/node-1/node.log "$DIR"/node-2/node.log "$DIR"/node-3/node.log ;;
  *) echo "usage: $0 start|status|logs|stop" >&2; exit 2 ;;
esac
