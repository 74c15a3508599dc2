#!/usr/bin/env bash
# heldout_cli.sh SCRIPT WORK: bench/heldout_lidc.py --soft-contrast changes the soft process's
# images only: with the default range it writes the same files as without the option, with
# another range the same annotations and oracle draws but other images; a reversed range is an
# error that names the option.
set -u
script=$(realpath "$1")
work=$2
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
source "$(dirname "$0")/checks.sh"
gen() { /usr/bin/python3 "$script" --process soft --cases 12 --seed 2 --oracle-samples 3 "$@"; }

gen --out "$work/plain" > "$work/plain.log" 2>&1 || fail "default run failed: $(cat "$work/plain.log")"
gen --out "$work/same" --soft-contrast 0.35 1.2 > /dev/null 2>&1 || fail "--soft-contrast 0.35 1.2 failed"
diff -r "$work/plain" "$work/same" > /dev/null ||
  fail "--soft-contrast 0.35 1.2 (the default) wrote other files than no option"
gen --out "$work/clear" --soft-contrast 1.0 2.0 > /dev/null 2>&1 || fail "--soft-contrast 1.0 2.0 failed"
for split in train val test; do
  diff -r "$work/plain/$split/gt" "$work/clear/$split/gt" > /dev/null ||
    fail "--soft-contrast changed the $split annotations"
done
diff -r "$work/plain/oracle_test" "$work/clear/oracle_test" > /dev/null ||
  fail "--soft-contrast changed the oracle's draws"
changed=$(diff -rq "$work/plain/test/images" "$work/clear/test/images" | wc -l)
[ "$changed" -gt 0 ] || fail "--soft-contrast 1.0 2.0 left every test image as it was"
if gen --out "$work/bad" --soft-contrast 2 1 > "$work/bad.log" 2>&1; then
  fail "--soft-contrast 2 1 was accepted"
fi
grep -q -- "--soft-contrast needs 0 <= LO <= HI" "$work/bad.log" ||
  fail "the reversed range's error does not name the option: $(tail -n 2 "$work/bad.log")"
echo "heldout_lidc.py --soft-contrast: images only ($changed test images differ)"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
