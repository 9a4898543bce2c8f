#!/usr/bin/env bash
# Installs tansu, the Kafka-protocol broker the Kafka tests run on loopback (with its in-memory
# storage, which needs the dynostore feature), into cargo's bin directory; skips it when present.
# The build takes 15-35 minutes: scripts/test.sh runs this in the background beside its own build.
set -euo pipefail

version=0.6.0
bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
build_dir="${TANSU_BUILD_DIR:-$HOME/.cache/tansu-build}"
present() { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; }
if present; then
  echo "install-tansu: tansu $version present"
  exit 0
fi
# --check: only say whether it is present (exit 1 when not).
[ "${1:-}" != --check ] || exit 1
# One install at a time: scripts/run.sh starts one in the background, and scripts/test.sh may
# start its own before that one is done. Two `cargo install`s into one build directory do not
# share the build: the second failed copying the binary the first had just installed (seen on
# a new machine). The second waits here for the first, then finds tansu present.
mkdir -p "$build_dir"
exec 9>"$build_dir/.install-tansu.lock"
if ! flock -n 9; then
  echo "install-tansu: another install is building tansu; waiting for it"
  flock 9
fi
if present; then
  echo "install-tansu: tansu $version present (installed while this one waited)"
  exit 0
fi
echo "install-tansu: building tansu $version (cargo install; 15-35 minutes on a new machine)"
# A build directory of its own that survives an interrupted install, so a rerun resumes.
# The tests need a working broker, not a fast one: at opt-level 1 (tansu's own profile is
# cargo's release default, opt-level 3) it built in 18 minutes beside our build on a new
# two-core machine, against 35 at 3 (docs/benchmarks.md, "Build time on a clean machine").
CARGO_TARGET_DIR="$build_dir" CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
  cargo install tansu --version "$version" --locked --features dynostore --quiet
echo "install-tansu: ok"
