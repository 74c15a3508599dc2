#!/usr/bin/env bash
# seeds_cli.sh SSN DEMO_OUT WORK: ssn train --random-seeds with several seeds trains one job per
# seed in JOB/seed_<s> (the same run as a single-seed job of that seed), refuses a repeated seed,
# and ssn report on JOB shows every seed and the mean +- SD over them.
set -u
ssn=$(realpath "$1")
demo=$(realpath "$2")
work=$3
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
source "$(dirname "$0")/checks.sh"
config=$demo/lowrank/config.json

"$ssn" train --config-file "$config" --data-dir "$demo/data" --job-dir "$work/job" \
  --random-seeds 3 5 --num-epochs 1 > "$work/train.log" 2>&1 ||
  fail "training two seeds failed: $(tail -c 600 "$work/train.log")"
for s in 3 5; do
  [ -f "$work/job/seed_$s/checkpoint_last.pt" ] || fail "no $work/job/seed_$s/checkpoint_last.pt"
done
"$ssn" train --config-file "$config" --data-dir "$demo/data" --job-dir "$work/single" \
  --random-seeds 5 --num-epochs 1 > /dev/null 2>&1 || fail "training seed 5 alone failed"
cut -d, -f1-4 "$work/single/train_log.csv" > "$work/single.csv"
cut -d, -f1-4 "$work/job/seed_5/train_log.csv" > "$work/seed5.csv"
cmp -s "$work/single.csv" "$work/seed5.csv" ||
  fail "seed 5 of the pair differs from seed 5 alone: $(cat "$work/single.csv" "$work/seed5.csv")"
cmp -s "$work/job/seed_3/train_log.csv" "$work/job/seed_5/train_log.csv" &&
  fail "seeds 3 and 5 trained the same run"
for s in 3 5; do
  "$ssn" predict --config-file "$config" --checkpoint "$work/job/seed_$s/checkpoint_best.pt" \
    --data-dir "$demo/data" --out "$work/job/seed_$s/predictions" > /dev/null 2>&1 ||
    fail "predict seed $s failed"
  "$ssn" evaluate --predictions "$work/job/seed_$s/predictions" --out "$work/job/seed_$s/evaluation" \
    --num-samples 10 > /dev/null 2>&1 || fail "evaluate seed $s failed"
done
"$ssn" report --job-dir "$work/job" > "$work/report.log" 2>&1 || fail "report failed: $(cat "$work/report.log")"
grep -q "job: 2 seeds" "$work/job/report.html" || fail "the report has no seeds section"
grep -q "mean &plusmn; SD over seeds" "$work/job/report.html" || fail "the report has no mean +- SD"
echo "ok: two seeds trained in seed_3 and seed_5 and reported together"
expect_failure "a repeated seed" "--random-seeds: a seed is given twice" \
  "$ssn" train --config-file "$config" --data-dir "$demo/data" --job-dir "$work/twice" \
  --random-seeds 1 1
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
