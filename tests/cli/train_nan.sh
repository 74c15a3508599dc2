#!/usr/bin/env bash
# train_nan.sh SSN CONFIG WORK: a learning rate of 1e30 makes the loss non-finite; each such step is
# skipped and reported, and training stops with a clear error after training.max_bad_steps.
set -u
ssn=$1
config=$2
work=$3
rm -rf "$work"
"$ssn" synth --kind lidc-like --out "$work/data" --cases 40 --seed 1 > /dev/null || exit 1
stderr=$("$ssn" train --config-file "$config" --job-dir "$work/job" --data-dir "$work/data" 2>&1 >/dev/null)
status=$?
echo "$stderr" | tail -4
[ "$status" -eq 1 ] || { echo "expected exit code 1, got $status"; exit 1; }
grep -q "non-finite loss, step skipped" <<<"$stderr" || { echo "no skipped-step report"; exit 1; }
grep -q "ssn: error: training stopped: 3 steps had a non-finite loss (training.max_bad_steps = 2)" \
  <<<"$stderr" || { echo "no clear error"; exit 1; }
echo ok
