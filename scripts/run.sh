#!/usr/bin/env bash
# The main job: one node with the embedded defaults (data in ./data, HTTP 127.0.0.1:9201 with the
# web UI at /ui/, gRPC 127.0.0.1:9202) fed a demo workload of live meetings and node-exporter
# series. Ctrl-C stops it.
# Arguments replace the subcommand: `scripts/run.sh server --data-dir /tmp/x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
scripts/own-target.sh
[ $# -gt 0 ] || set -- demo
# COLLABSTREAM_BIN runs a binary already built (a release from elsewhere, or the tests' debug one).
if [ -n "${COLLABSTREAM_BIN:-}" ]; then
  exec "$COLLABSTREAM_BIN" "$@"
fi
# The dev profile (dependencies optimised, ours not) is the one scripts/test.sh builds, so that
# the tests after the demo can reuse its dependencies (RocksDB's C++, DataFusion); test.sh
# compiles our own crates again, linted (how many minutes that saves is not measured yet);
# `collabstream bench` measures, so it gets the release profile. CARGO_PROFILE=release
# scripts/run.sh builds everything optimised (a second build of every dependency).
profile=dev
[ "$1" != bench ] || profile=release
cargo build --locked --profile "${CARGO_PROFILE:-$profile}" --bin collabstream
# tansu (the Kafka tests' broker) takes 15-35 minutes to build on a new machine, and
# scripts/test.sh waits for it before its first test. A newcomer runs this script first: once
# our build is done, tansu builds beside the demo at the lowest priority, so that test.sh finds
# it built. Should test.sh start while it still builds, its install waits for this one (a lock
# in install-tansu.sh) and then finds tansu installed (measured: docs/benchmarks.md, "A
# newcomer's first hour").
# COLLABSTREAM_NO_TANSU=1 skips it; so does any subcommand but the demo (a bench must not share
# the machine with a compiler).
if [ "$1" = demo ] && [ -z "${COLLABSTREAM_NO_TANSU:-}" ] && ! scripts/install-tansu.sh --check >/dev/null 2>&1; then
  tansu_log="${XDG_CACHE_HOME:-$HOME/.cache}/collabstream-install-tansu.log"
  mkdir -p "$(dirname "$tansu_log")"
  echo "run.sh: building tansu for scripts/test.sh in the background at low priority (log: $tansu_log; COLLABSTREAM_NO_TANSU=1 skips it)" >&2
  # setsid gives it a session, and so a scheduler autogroup, of its own: where autogroups are
  # on, the kernel shares the CPU between groups whatever their processes' nice values, so the
  # group's own nice is what makes it yield to the demo.
  setsid sh -c 'echo 19 >/proc/self/autogroup 2>/dev/null; exec nice -n 19 scripts/install-tansu.sh' \
    >"$tansu_log" 2>&1 </dev/null &
fi
exec cargo run --locked --profile "${CARGO_PROFILE:-$profile}" --bin collabstream -- "$@"
