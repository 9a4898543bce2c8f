#!/usr/bin/env bash
# The test command: installs what the tests need, then runs exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# One target directory outside the clone, shared by every checkout and CI (RocksDB's C++ is
# the slow part of a clean build; this keeps it to once per machine).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build the collabstream binary (the end-to-end tests run it)"
cargo build --locked --bin collabstream
echo "== cargo test"
cargo test --workspace --all-targets --locked
