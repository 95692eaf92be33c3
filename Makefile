# slipway — the commands of the README. Each target runs the idempotent
# set-up first, so a fresh machine needs nothing installed by hand.

CARGO ?= cargo
SLIPWAY := $(or $(CARGO_TARGET_DIR),target)/release/slipway

.PHONY: setup build run test lint lint-migrations fmt bench snapshot lambda clean-local

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
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## `slipway lint` on migrations/: no database, errors fail the build.
## Every shipped migration has its rollback, so all of them must.
ROLLBACK_REQUIRED_FROM ?= 0
lint-migrations: setup
	$(CARGO) run --quiet --bin slipway -- lint --migrations migrations \
		--rollback-required-from $(ROLLBACK_REQUIRED_FROM)

## Everything CI runs: the whole workspace, the Lambda's end-to-end test
## (moto, cargo lambda, awscli, squawk from .venv) included.
test: lint lint-migrations
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

## Benchmarks against psql on a real server (markdown tables on stdout):
## migrations (W1, W2), then the drift check on 1,000 tables, then the
## Lambda's cold start and zip size.
bench: setup lambda
	$(CARGO) bench --bench migrate
	$(CARGO) bench --bench drift
	$(CARGO) bench -p slipway-lambda --bench cold_start

## The function's deployment zip, built for x86_64 with the host toolchain
## (the template chooses the architecture; CI builds arm64 natively).
LAMBDA_ZIP := $(or $(CARGO_TARGET_DIR),target)/lambda/bootstrap/bootstrap.zip
lambda: setup
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO) lambda build --release --output-format zip \
		--compiler cargo --package slipway-lambda
	@echo "$(LAMBDA_ZIP): $$(wc -c < $(LAMBDA_ZIP)) bytes"

## Refresh migrations/schema.snapshot.json after changing migrations/
## (`make test` fails while it is stale).
snapshot: build
	$(SLIPWAY) snapshot --out migrations/schema.snapshot.json

clean-local:
	-$(SLIPWAY) local stop
	rm -rf .slipway
