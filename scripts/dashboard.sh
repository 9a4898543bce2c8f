#!/usr/bin/env bash
# The live meetings view: the web UI every node serves (default http://127.0.0.1:9201/ui/, the
# node of `scripts/run.sh` or node 1 of `deploy/cluster.sh`). Checks that it answers, prints the
# address and opens it in a browser when this machine has one.
#   scripts/dashboard.sh [URL]
set -euo pipefail
url="${1:-http://127.0.0.1:9201/ui/}"
for _ in $(seq 1 30); do
  if curl -fsS -o /dev/null "$url"; then
    echo "web UI: ${url}#/meetings (live meetings), ${url}#/query (PromQL), ${url}#/cluster"
    echo "Grafana: import deploy/grafana/dashboards/*.json, or run deploy/compose (Grafana on :3000)"
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null 2>&1; then
      xdg-open "${url}#/meetings" >/dev/null 2>&1 || true
    fi
    exit 0
  fi
  sleep 1
done
echo "no web UI at $url after 30 s: start a node first (make quickstart, or make cluster-up)" >&2
exit 1
