# slipway — the commands of the README. Each target runs the idempotent
# set-up first, so a fresh machine needs nothing installed by hand.

CARGO ?= cargo
SLIPWAY := $(or $(CARGO_TARGET_DIR),target)/release/slipway

.PHONY: setup build run test lint lint-migrations fmt bench snapshot verify lambda template clean-local

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
## (moto, cargo lambda, awscli, squawk from .venv), cfn-lint on infra/template.json
## and scripts/pipeline-local.sh (lambda/tests/pipeline_local.rs) included.
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

## The function's deployment zip, built with the host toolchain for the
## host (x86_64 here); buildspec.yml runs `make lambda LAMBDA_FLAGS=--arm64`
## on an arm64 image, the template's default architecture.
LAMBDA_ZIP := $(or $(CARGO_TARGET_DIR),target)/lambda/bootstrap/bootstrap.zip
LAMBDA_FLAGS ?=
lambda: setup
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO) lambda build --release --output-format zip \
		--compiler cargo --package slipway-lambda $(LAMBDA_FLAGS)
	@echo "$(LAMBDA_ZIP): $$(wc -c < $(LAMBDA_ZIP)) bytes"

## The CloudFormation template, rendered from infra/ (`make test` fails
## while the committed infra/template.json is stale).
template:
	$(CARGO) run --quiet --package slipway-infra -- infra/template.json

## Refresh migrations/schema.snapshot.json after changing migrations/
## (`make test` fails while it is stale).
snapshot: build
	$(SLIPWAY) snapshot --out migrations/schema.snapshot.json

## Apply, roll back and re-apply each migration of migrations/ on a
## throw-away database (`make test` runs the same check: tests/integration/verify.rs).
verify: build
	$(SLIPWAY) verify

## The cluster may live under /var/tmp when the server's user cannot enter
## this directory (root, 0700 checkout); .slipway/local/LOCATION says where.
clean-local:
	-$(SLIPWAY) local stop
	rm -rf "$$(cat .slipway/local/LOCATION 2>/dev/null)" .slipway
