#!/usr/bin/env bash
# The test command: installs what the tests need, then runs exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# tansu, the Kafka broker of the Kafka tests, takes a long build on a new machine: it runs
# beside ours and is waited for before any test runs (tests are timing-sensitive; a compile
# beside them would make them flaky).
tansu_log="$(mktemp -t install-tansu.XXXXXX.log)"
# Its own process group, so that stopping early stops its cargo too.
setsid scripts/install-tansu.sh >"$tansu_log" 2>&1 &
tansu_pid=$!
trap 'kill -- "-$tansu_pid" 2>/dev/null || true' EXIT

# One target directory outside the clone, shared by every checkout and CI (RocksDB's C++ is
# the slow part of a clean build; this keeps it to once per machine).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
scripts/own-target.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== build the collabstream binary and every test (the end-to-end tests run the binary), with"
echo "   clippy's lints as our crates compile (-D warnings)"
# `cargo clippy` type-checks every dependency a second time: on a new machine that pass took 24
# of the 47 minutes before the first test (docs/benchmarks.md). With clippy-driver as the
# workspace's compiler wrapper, our crates are linted while they are built and dependencies are
# built once. CLIPPY_ARGS is how cargo-clippy hands its flags to clippy-driver.
# scripts/lint.sh (`make lint`) is the same gate as a separate pass.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# That protocol is cargo-clippy's own, not a promise: check that a lint still fails the build.
canary="$(mktemp -d)"
echo 'pub fn f(v: &[u8]) -> bool { v.len() == 0 }' >"$canary/lib.rs"
if "$RUSTC_WORKSPACE_WRAPPER" rustc --edition 2021 --crate-type lib --emit=metadata \
  -o "$canary/lib.rmeta" "$canary/lib.rs" >/dev/null 2>&1; then
  echo "clippy-driver no longer takes -D warnings through CLIPPY_ARGS: lint with scripts/lint.sh" >&2
  exit 1
fi
rm -rf "$canary"
cargo build --locked --bin collabstream
cargo test --workspace --all-targets --locked --no-run
echo "== wait for tansu"
if ! wait "$tansu_pid"; then
  cat "$tansu_log"
  echo "installing tansu failed (scripts/install-tansu.sh)" >&2
  exit 1
fi
trap - EXIT
cat "$tansu_log"
echo "== cargo test"
cargo test --workspace --all-targets --locked
