#!/usr/bin/env bash
# Makes cargo rebuild this checkout's crates when the shared target directory
# ($CARGO_TARGET_DIR) was last built from another checkout. Cargo names a workspace crate's
# artifacts by its path inside the workspace, not by the checkout's, and takes them as fresh
# when no source is newer than they are: a second checkout of the project that built after
# this one's sources last changed leaves artifacts this one would use as its own (seen: a
# bench built in a worktree of the previous commit, then in another checkout, was the same
# binary), and its tests would run the other checkout's code. Touching this checkout's files
# once, when the directory changes hands, rebuilds only our crates; dependencies stay shared.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:?CARGO_TARGET_DIR must be set}"
mark="$target/.collabstream-checkout"
here="$(pwd -P)"
mkdir -p "$target"
if [ "$(cat "$mark" 2>/dev/null || true)" != "$here" ]; then
  if [ -f "$mark" ]; then
    echo "own-target: $target was last built from $(cat "$mark"); rebuilding this checkout's crates"
  fi
  find . \( -name .git -o -name node_modules -o -name target \) -prune -o -type f -exec touch -c {} +
  echo "$here" >"$mark"
fi
