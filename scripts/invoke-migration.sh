#!/usr/bin/env bash
# Invoke the slipway migration function and print its report (one line of
# JSON) on stdout. buildspec.yml runs it; so does the end-to-end test
# (lambda/tests/end_to_end.rs), against `cargo lambda watch`.
#
#   scripts/invoke-migration.sh validate
#   scripts/invoke-migration.sh apply [--dry-run] [--to 0005]
#   scripts/invoke-migration.sh rollback --to 0003 [--dry-run]
#   scripts/invoke-migration.sh --payload '{"action":"status"}'
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
if [ -z "$payload" ]; then
  [ -n "$action" ] || die "say what to do: validate, apply, rollback, status (see --help)"
  # Actions and versions are plain words; refuse anything that would need
  # JSON escaping rather than escape it by hand.
  [[ "$action" =~ ^[a-z-]+$ ]] || die "'$action' is not an action"
  payload="{\"action\":\"$action\",\"dry_run\":$dry_run"
  if [ -n "$to" ]; then
    [[ "$to" =~ ^[0-9]+$ ]] || die "--to takes a version made of digits, like 0005"
    payload="$payload,\"to\":\"$to\""
  fi
  payload="$payload}"
elif [ -n "$action" ] || [ "$dry_run" = true ] || [ -n "$to" ]; then
  die "--payload is the whole event; do not combine it with an action, --dry-run or --to"
fi

args=(lambda invoke --function-name "$function_name" --payload "$payload")
[ -z "$endpoint_url" ] || args+=(--endpoint-url "$endpoint_url")
# AWS CLI v2 reads --payload as base64 unless told otherwise; v1 (the one on
# PyPI) has no such flag and sends the text as it is.
if "$aws" --version 2>&1 | grep -q '^aws-cli/1\.'; then
  :
else
  args+=(--cli-binary-format raw-in-base64-out)
fi
# A migration may run for minutes; the CLI's default read timeout is 60 s,
# after which it would invoke again. One attempt, a long read.
args+=(--cli-read-timeout 900 --cli-connect-timeout 10)

out="$(mktemp "${TMPDIR:-/tmp}/slipway-invoke.XXXXXX")"
trap 'rm -f "$out"' EXIT

if ! meta="$(AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard "$aws" "${args[@]}" "$out")"; then
  die "aws lambda invoke failed (see above)"
fi
report="$(cat "$out")"
if printf '%s' "$meta" | grep -q '"FunctionError"'; then
  printf '%s\n' "$report"
  die "the function raised an error: $(printf '%s' "$meta" | tr -d '\n ')"
fi
# Every report starts with "success" (pinned by a unit test in src/report.rs).
case "$report" in
  '{"success":true,'*) printf '%s\n' "$report"; exit 0 ;;
  '{"success":false,'*) printf '%s\n' "$report"; exit 2 ;;
  *) printf '%s\n' "$report"; die "the response is not a slipway report" ;;
esac
