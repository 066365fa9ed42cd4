# The everyday tasks. `make demo` and `make test` set the machine up first (Debian 12).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: setup ui demo walkthrough test fmt lint vectors

setup:
	@scripts/setup.sh

## The console's front end: install exactly the locked packages, type-check, unit-test, build
## (the console binary embeds ui/dist), and check the generated protocol types are current.
ui:
	cd ui && npm ci --no-audit --no-fund --loglevel=error
	cd ui && npm run --silent check
	cd ui && npm test --silent
	cd ui && npm run --silent types && git diff --exit-code -- src/generated/api.ts src/generated/console.ts
	cd ui && npm run --silent build

## The front end as the demo needs it: packages installed only when the lock changed, a
## build only when a source changed (`make ui` checks and tests it as well, for `make test`).
UI_SOURCES := $(shell find ui/src ui/index.html ui/package.json ui/vite.config.ts ui/tsconfig.json -type f 2>/dev/null)
ui/node_modules/.package-lock.json: ui/package-lock.json
	@cd ui && npm ci --no-audit --no-fund --loglevel=error > /dev/null
ui/dist/index.html: ui/node_modules/.package-lock.json $(UI_SOURCES)
	@cd ui && npm run --silent build > /dev/null

## Set up and run the demo: embedded service, simulated agent and approvers, live log. The
## workspace's two binaries are built with the whole workspace's features, as the tests build
## them, so after `make test` nothing is rebuilt (a `cargo run` of the CLI alone would resolve
## other features and rebuild our crates), and the demo runs the binary built.
demo: setup ui/dist/index.html
	@$(CARGO) build --quiet --workspace --bins
	@"$$($(CARGO) metadata --format-version 1 --no-deps | jq -r .target_directory)/debug/countersign" demo $(DEMO_ARGS)

## The protocol core on its own: one request, its signatures, the log and its proofs.
walkthrough:
	$(CARGO) run --quiet -p countersign-core --example walkthrough

## Set up and run every check and test, as CI does.
test: setup ui
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Rewrite tests/vectors/ after a deliberate protocol change (review the diff!).
vectors:
	COUNTERSIGN_UPDATE_VECTORS=1 $(CARGO) test -p countersign-core --test vectors
