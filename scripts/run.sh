#!/usr/bin/env bash
# The main job: one node with the embedded defaults (data in ./data, HTTP 127.0.0.1:9201, gRPC
# 127.0.0.1:9202) fed a demo workload of live meetings and node-exporter series. Ctrl-C stops it.
# Arguments replace the subcommand: `scripts/run.sh server --data-dir /tmp/x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
[ $# -gt 0 ] || set -- demo
exec cargo run --release --locked --bin collabstream -- "$@"
