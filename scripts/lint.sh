#!/usr/bin/env bash
# The lint gate on its own (`make lint`): formatting, then clippy with every warning an error,
# over every crate and target. scripts/test.sh applies the same gate while it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collabstream-target}"
scripts/own-target.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
