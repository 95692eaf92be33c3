# slipway — the commands of the README. Each target runs the idempotent
# set-up first, so a fresh machine needs nothing installed by hand.

CARGO ?= cargo
SLIPWAY := $(or $(CARGO_TARGET_DIR),target)/release/slipway

.PHONY: setup build run test lint fmt bench clean-local

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --bin slipway

## The main job: migrate slipway's own throw-away PostgreSQL (.slipway/local/)
## with migrations/, then validate and print the JSON report.
run: build
	$(SLIPWAY) --local apply
	$(SLIPWAY) --local validate --json

## Quick loop: formatting and clippy.
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## Everything CI runs.
test: lint
	$(CARGO) test

fmt:
	$(CARGO) fmt --all

## Benchmarks against psql on a real server (markdown table on stdout).
bench: setup
	$(CARGO) bench --bench migrate

clean-local:
	-$(SLIPWAY) local stop
	rm -rf .slipway
