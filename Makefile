# Shortcuts; the scripts are the source of truth.
.PHONY: run test verify bench fmt

run:
	scripts/run.sh

test verify:
	scripts/test.sh

bench:
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-$$HOME/.cache/collabstream-target} cargo bench -p collabstream-store --bench store

fmt:
	cargo fmt --all
