#!/usr/bin/env bash
# expect_output.sh PATTERN COMMAND...: passes when COMMAND exits 0 and its stdout and stderr
# together match the extended regular expression PATTERN (a regular expression alone would let a
# command that printed the line and then failed pass).
set -u
pattern=$1
shift
output=$("$@" 2>&1)
status=$?
printf '%s\n' "$output"
if [ "$status" -ne 0 ]; then
  echo "expected exit code 0, got $status from: $*" >&2
  exit 1
fi
if ! grep -Eq -- "$pattern" <<<"$output"; then
  printf 'output did not match "%s"\n' "$pattern" >&2
  exit 1
fi
