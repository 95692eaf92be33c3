#!/usr/bin/env bash
# The pipeline's migrate step, played against a local stack: the very
# post_build command of buildspec.yml that runs scripts/invoke-migration.sh,
# read from the file and run as CodeBuild runs it, after three "deploys" of
# the function:
#
#   1. this commit's build on an empty database: the migrations are applied;
#   2. the same build again: validate finds nothing to do, nothing is applied;
#   3. a build with a migration that fails half-way: the step fails, the
#      report is printed, and the database is exactly as before.
#
# A deploy here is what CloudFormation does to the function: a new process
# of the given `bootstrap` with the template's environment, polling the same
# Lambda endpoint (`cargo lambda watch`). The database is checked before and
# after each step with psql: the history rows and a digest of the catalog.
#
# Run alone, it runs its test (lambda/tests/pipeline_local.rs), which starts
# PostgreSQL, moto (the secret, CloudWatch) and `cargo lambda watch`, builds
# the broken variant, and runs this script inside that stack with:
#
#   SLIPWAY_LOCAL_STACK=1, SLIPWAY_FUNCTION, LAMBDA_ENDPOINT_URL, AWS_*
#   AWS_LAMBDA_RUNTIME_API        where a deployed function polls
#   DB_SECRET_ARN, SLIPWAY_ENVIRONMENT, METRICS_NAMESPACE, ...  the function's
#                                 environment, as the template sets it
#   SLIPWAY_ARTIFACT              this commit's bootstrap
#   SLIPWAY_BROKEN_ARTIFACT       the same with a failing migration added
#   SLIPWAY_BROKEN_MIGRATION      that migration's file name
#   SLIPWAY_CHECK_DATABASE_URL    the database, for psql (not the function)
#   PSQL                          psql of the server
#
# Exit codes: 0 every deploy went as described; 1 one did not (the reason,
# the step's output and the function's log are printed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "${SLIPWAY_LOCAL_STACK:-}" != 1 ]; then
  exec "${CARGO:-cargo}" test --package slipway-lambda --test pipeline_local -- --nocapture
fi

say() { printf 'pipeline-local: %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

for var in SLIPWAY_FUNCTION LAMBDA_ENDPOINT_URL AWS_LAMBDA_RUNTIME_API DB_SECRET_ARN \
  SLIPWAY_ENVIRONMENT SLIPWAY_ARTIFACT SLIPWAY_BROKEN_ARTIFACT SLIPWAY_BROKEN_MIGRATION \
  SLIPWAY_CHECK_DATABASE_URL PSQL; do
  [ -n "${!var:-}" ] || fail "$var is not set; run scripts/pipeline-local.sh alone, which starts the stack"
done

# The migrate step exactly as buildspec.yml writes it.
python="${SLIPWAY_VENV:-$root/.venv}/bin/python"
migrate_step="$("$python" - <<'PY'
import sys
import yaml

with open("buildspec.yml", encoding="utf-8") as f:
    spec = yaml.safe_load(f)
steps = [c for c in spec["phases"]["post_build"]["commands"] if "invoke-migration.sh" in c]
if len(steps) != 1:
    sys.exit(f"buildspec.yml: {len(steps)} post_build commands run invoke-migration.sh; expected one")
print(steps[0])
PY
)" || fail "cannot read the migrate step from buildspec.yml"
say "the migrate step of buildspec.yml: $migrate_step"

work="$(mktemp -d "${TMPDIR:-/tmp}/slipway-pipeline-local.XXXXXX")"
function_pid=""

stop_function() {
  if [ -n "$function_pid" ]; then
    kill "$function_pid" 2>/dev/null || true
    wait "$function_pid" 2>/dev/null || true
    function_pid=""
  fi
}
trap 'stop_function; rm -rf "$work"' EXIT

# What the function's process gets: the runtime's variables, the AWS
# settings, and the template's environment (infra: FUNCTION_ENVIRONMENT).
passed=(PATH HOME LANG
  AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL
  AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_EC2_METADATA_DISABLED
  AWS_LAMBDA_RUNTIME_API
  DB_SECRET_ARN SLIPWAY_ENVIRONMENT METRICS_NAMESPACE DB_SSLMODE DB_CA_BUNDLE
  LOCK_TIMEOUT STATEMENT_TIMEOUT CONNECT_TIMEOUT HISTORY_SCHEMA)

deploy() {
  local artifact="$1" name="$2" vars=() var
  stop_function
  for var in "${passed[@]}"; do
    [ -z "${!var+set}" ] || vars+=("$var=${!var}")
  done
  env -i "${vars[@]}" AWS_LAMBDA_FUNCTION_NAME="$SLIPWAY_FUNCTION" \
    AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512 \
    "$artifact" >"$work/function-$name.log" 2>&1 &
  function_pid=$!
  current_log="$work/function-$name.log"
}

# History rows, a digest of the managed schema's catalog, the recorded
# snapshot's fingerprint: what "the database is unchanged" means.
sql() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$SLIPWAY_CHECK_DATABASE_URL" -c "$1"; }
db_state() {
  local catalog history
  catalog="$(sql "
    SELECT md5(coalesce(string_agg(
             c.relname || ' ' || c.relkind::text || ' ' || coalesce(a.attname, '') || ' '
               || coalesce(format_type(a.atttypid, a.atttypmod), ''),
             ',' ORDER BY c.relname, a.attnum), ''))
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = 'public'")" || fail "cannot read the catalog"
  if [ "$(sql "SELECT to_regclass('slipway.history') IS NOT NULL")" = t ]; then
    history="$(sql "
      SELECT count(*) || ' rows, ' || coalesce(string_agg(coalesce(version, 'R') || ':' || left(checksum, 12), ',' ORDER BY id), '')
        || ' | snapshot ' || coalesce((SELECT left(fingerprint, 12) FROM slipway.schema_snapshot), 'none')
      FROM slipway.history")" || fail "cannot read the history"
  else
    history="no history"
  fi
  printf 'catalog %s | history %s\n' "$catalog" "$history"
}

# Run the migrate step; its output is printed, and kept for the checks.
migrate() {
  status=0
  (eval "$migrate_step") >"$work/out" 2>"$work/err" || status=$?
  output="$(cat "$work/out")"
  printf '%s\n' "--- migrate step: exit $status; stdout:" "$output" "--- stderr:"
  cat "$work/err"
  printf '%s\n' "---"
}

explain() {
  say "FAILED: $*"
  say "the function's log:"
  cat "$current_log"
  exit 1
}

empty="$(db_state)"
say "database before: $empty"

say "deploy 1: this commit's build"
deploy "$SLIPWAY_ARTIFACT" first
migrate
[ "$status" -eq 0 ] || explain "deploy 1: the migrate step exited $status"
# Every report starts with "success", then "action" (src/report/mod.rs).
apply_report="$(printf '%s\n' "$output" | grep '^{"success":true,"action":"apply"' || true)"
[ -n "$apply_report" ] || explain "deploy 1: no successful apply in the output"
case "$apply_report" in *'"applied":[]'*) explain "deploy 1: apply applied nothing" ;; esac
applied="$(db_state)"
[ "$applied" != "$empty" ] || explain "deploy 1: the database did not change"
say "database after deploy 1: $applied"

say "deploy 2: the same build again"
deploy "$SLIPWAY_ARTIFACT" second
migrate
[ "$status" -eq 0 ] || explain "deploy 2: the migrate step exited $status"
case "$output" in *'"schema_valid":true'*) ;; *) explain "deploy 2: validate did not find the schema valid" ;; esac
case "$output" in *'"action":"apply"'*) explain "deploy 2: apply ran on a valid schema" ;; esac
[ "$(db_state)" = "$applied" ] || explain "deploy 2: the database changed"

say "deploy 3: a build whose new migration fails"
deploy "$SLIPWAY_BROKEN_ARTIFACT" broken
migrate
[ "$status" -ne 0 ] || explain "deploy 3: the migrate step succeeded"
case "$output" in *'"code":"migration_failed"'*) ;; *) explain "deploy 3: no migration_failed report" ;; esac
case "$output" in *"$SLIPWAY_BROKEN_MIGRATION"*) ;; *) explain "deploy 3: the report does not name $SLIPWAY_BROKEN_MIGRATION" ;; esac
after="$(db_state)"
[ "$after" = "$applied" ] || explain "deploy 3: the database changed: $after"

say "ok: deploy 1 applied, deploy 2 changed nothing, deploy 3 failed (exit $status) and left the database as it was"
