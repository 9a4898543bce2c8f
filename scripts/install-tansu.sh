#!/usr/bin/env bash
# Installs tansu, the Kafka-protocol broker the Kafka tests run on loopback (with its in-memory
# storage, which needs the dynostore feature), into cargo's bin directory; skips it when present.
# The build takes 15-25 minutes: scripts/test.sh runs this in the background beside its own build.
set -euo pipefail

version=0.6.0
bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
  echo "install-tansu: tansu $version present"
  exit 0
fi
# --check: only say whether it is present (exit 1 when not).
[ "${1:-}" != --check ] || exit 1
echo "install-tansu: building tansu $version (cargo install; 15-25 minutes)"
# A build directory of its own that survives an interrupted install, so a rerun resumes.
CARGO_TARGET_DIR="${TANSU_BUILD_DIR:-$HOME/.cache/tansu-build}" \
  cargo install tansu --version "$version" --locked --features dynostore --quiet
echo "install-tansu: ok"
