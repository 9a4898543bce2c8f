# The origin project's workflow, for one binary. Every target is a thin call of a script;
# `make help` lists them. Scripts install what they need (scripts/install-deps.sh).

# Where `make producer` sends: gRPC endpoints (any node of a cluster; retries move on).
TARGET ?= http://127.0.0.1:9202,http://127.0.0.1:9212,http://127.0.0.1:9222
# Concurrent meetings `make producer` simulates, and more of its flags (e.g. --count 1000).
MEETINGS ?= 100
PRODUCER_ARGS ?=
# The node whose web UI `make dashboard` names.
UI ?= http://127.0.0.1:9201/ui/
# The scripts' shared build directory, for the cargo targets below too.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/collabstream-target

.PHONY: help quickstart run producer dashboard test verify lint format fmt bench logs cluster-up cluster-status cluster-down

help: ## this list
	@grep -E '^[a-z -]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

quickstart run: ## one node with the embedded defaults and a demo workload (web UI on :9201/ui/)
	scripts/run.sh

producer: ## live meetings' events to $(TARGET) until Ctrl-C (make producer MEETINGS=500)
	scripts/run.sh produce --target $(TARGET) --workload meetings --size $(MEETINGS) $(PRODUCER_ARGS)

dashboard: ## the web UI's address, opened in a browser when there is one
	scripts/dashboard.sh $(UI)

test verify: ## everything CI runs: lint, build, every test
	scripts/test.sh

lint: ## rustfmt --check and clippy -D warnings
	scripts/lint.sh

format fmt: ## rustfmt every crate
	cargo fmt --all

bench: ## the storage engine's benchmarks (docs/benchmarks.md lists the others)
	cargo bench -p collabstream-store --bench store

logs: ## follow the local cluster's logs
	deploy/cluster.sh logs

cluster-up: ## three nodes on loopback (HTTP 9201/9211/9221, gRPC 9202/9212/9222)
	deploy/cluster.sh start

cluster-status: ## leader, term, indexes and each member's lag
	deploy/cluster.sh status

cluster-down: ## stop the three nodes (SIGTERM, then wait)
	deploy/cluster.sh stop
