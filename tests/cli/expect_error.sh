#!/usr/bin/env bash
# expect_error.sh PATTERN COMMAND...: passes when COMMAND exits non-zero and its stderr matches the
# extended regular expression PATTERN.
set -u
pattern=$1
shift
stderr=$("$@" 2>&1 >/dev/null)
status=$?
if [ "$status" -eq 0 ]; then
  echo "expected a non-zero exit code from: $*" >&2
  exit 1
fi
if ! grep -Eq -- "$pattern" <<<"$stderr"; then
  printf 'stderr did not match "%s":\n%s\n' "$pattern" "$stderr" >&2
  exit 1
fi
echo "exit $status, stderr: $stderr"
