#!/usr/bin/env bash
# Invoke the slipway migration function and print its report (one line of
# JSON) on stdout. buildspec.yml runs it; so do the end-to-end tests
# (lambda/tests/end_to_end.rs, scripts/pipeline-local.sh), against
# `cargo lambda watch`.
#
#   scripts/invoke-migration.sh validate
#   scripts/invoke-migration.sh apply [--dry-run] [--to 0005]
#   scripts/invoke-migration.sh migrate [--dry-run] [--to 0005]
#   scripts/invoke-migration.sh rollback --to 0003 [--dry-run]
#   scripts/invoke-migration.sh --payload '{"action":"status"}'
#
# `migrate` is the pipeline's step after a deploy: validate; when the report
# says "schema_valid":false, apply (with --dry-run and --to, if given). Both
# reports are printed, one per line; the exit code is the last one's.
#
# Options (before or after the action):
#   --function NAME     function name or ARN        [env: SLIPWAY_FUNCTION]
#   --endpoint-url URL  Lambda endpoint (emulator)  [env: LAMBDA_ENDPOINT_URL]
#   --payload JSON      send this event as it is (tests, debugging)
#   AWS_CLI=path        the aws executable (default: aws)
#
# Exit codes:
#   0  the report says "success":true (for validate, read "schema_valid")
#   2  the report says "success":false; its error is on stdout
#   3  no report: the invoke failed, the function raised an error
#      (FunctionError), or the payload is not a report
#
# `aws lambda invoke` exits 0 even when the function failed, so success is
# read from the payload, never from the CLI's exit code.
set -euo pipefail

die() { printf 'invoke-migration: %s\n' "$*" >&2; exit 3; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 3; }

function_name="${SLIPWAY_FUNCTION:-}"
endpoint_url="${LAMBDA_ENDPOINT_URL:-}"
aws="${AWS_CLI:-aws}"
action="" payload="" dry_run=false to=""

while [ $# -gt 0 ]; do
  case "$1" in
    --function) function_name="${2:?--function needs a name}"; shift 2 ;;
    --endpoint-url) endpoint_url="${2:?--endpoint-url needs a URL}"; shift 2 ;;
    --payload) payload="${2:?--payload needs JSON}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --to) to="${2:?--to needs a version}"; shift 2 ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$action" ] || die "one action only, got '$action' and '$1'"; action="$1"; shift ;;
  esac
done

[ -n "$function_name" ] || die "no function: set SLIPWAY_FUNCTION or pass --function NAME"

# The event for an action. Actions and versions are plain words (checked
# below); anything that would need JSON escaping is refused, not escaped.
event() {
  local event="{\"action\":\"$1\",\"dry_run\":$2"
  [ -z "$3" ] || event="$event,\"to\":\"$3\""
  printf '%s}' "$event"
}

if [ -z "$payload" ]; then
  [ -n "$action" ] || die "say what to do: validate, apply, migrate, rollback, status (see --help)"
  [[ "$action" =~ ^[a-z-]+$ ]] || die "'$action' is not an action"
  [ -z "$to" ] || [[ "$to" =~ ^[0-9]+$ ]] ||
    die "--to takes a version made of digits, like 0005"
  [ "$action" = migrate ] || payload="$(event "$action" "$dry_run" "$to")"
elif [ -n "$action" ] || [ "$dry_run" = true ] || [ -n "$to" ]; then
  die "--payload is the whole event; do not combine it with an action, --dry-run or --to"
fi

base=(lambda invoke --function-name "$function_name")
[ -z "$endpoint_url" ] || base+=(--endpoint-url "$endpoint_url")
# AWS CLI v2 reads --payload as base64 unless told otherwise; v1 (the one on
# PyPI) has no such flag and sends the text as it is.
if "$aws" --version 2>&1 | grep -q '^aws-cli/1\.'; then
  :
else
  base+=(--cli-binary-format raw-in-base64-out)
fi
# A migration may run for minutes; the CLI's default read timeout is 60 s,
# after which it would invoke again. One attempt, a long read.
base+=(--cli-read-timeout 900 --cli-connect-timeout 10)

out="$(mktemp "${TMPDIR:-/tmp}/slipway-invoke.XXXXXX")"
trap 'rm -f "$out"' EXIT

# Send one event; print its report; return 0, 2 or 3 as documented above.
invoke() {
  local meta report
  if ! meta="$(AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard \
    "$aws" "${base[@]}" --payload "$1" "$out")"; then
    printf 'invoke-migration: aws lambda invoke failed (see above)\n' >&2
    return 3
  fi
  report="$(cat "$out")"
  printf '%s\n' "$report"
  if printf '%s' "$meta" | grep -q '"FunctionError"'; then
    printf 'invoke-migration: the function raised an error: %s\n' \
      "$(printf '%s' "$meta" | tr -d '\n ')" >&2
    return 3
  fi
  # Every report starts with "success" (pinned by a unit test in src/report/mod.rs).
  case "$report" in
    '{"success":true,'*) return 0 ;;
    '{"success":false,'*) return 2 ;;
    *) printf 'invoke-migration: the response is not a slipway report\n' >&2; return 3 ;;
  esac
}

say() { printf 'invoke-migration: %s\n' "$*" >&2; }

if [ "$action" != migrate ]; then
  status=0
  invoke "$payload" || status=$?
  exit "$status"
fi

status=0
validate="$(invoke "$(event validate false "")")" || status=$?
printf '%s\n' "$validate"
if [ "$status" -ne 0 ]; then
  say "validate failed; nothing applied"
  exit "$status"
fi
case "$validate" in
  *'"schema_valid":true'*) say "the schema is valid: nothing to apply"; exit 0 ;;
  *'"schema_valid":false'*) say "the schema is not valid: applying" ;;
  *) say "the validate report says nothing of schema_valid"; exit 3 ;;
esac
status=0
invoke "$(event apply "$dry_run" "$to")" || status=$?
if [ "$status" -eq 0 ]; then
  say "apply succeeded"
else
  say "apply failed (exit $status): the report above says why"
fi
exit "$status"
