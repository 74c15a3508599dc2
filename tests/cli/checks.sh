# checks.sh: sourced by the CLI test scripts that count failures and go on.
#   fail MESSAGE: prints FAIL and counts it in $failures.
#   expect_failure NAME PATTERN COMMAND...: COMMAND must exit 1 with PATTERN (extended regular
#   expression) on its stderr.
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect_failure() {
  local name=$1 pattern=$2
  shift 2
  local stderr status
  stderr=$("$@" 2>&1 >/dev/null)
  status=$?
  if [ "$status" -ne 1 ]; then
    fail "$name: exit code $status, expected 1; stderr: $(tail -c 400 <<<"$stderr")"
  elif ! grep -Eq -- "$pattern" <<<"$stderr"; then
    fail "$name: stderr does not match '$pattern': $(tail -c 400 <<<"$stderr")"
  else
    echo "ok: $name: $(grep 'ssn: error' <<<"$stderr" | tail -1 | cut -c1-200)"
  fi
}
