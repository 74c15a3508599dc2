#!/usr/bin/env bash
# train_resume.sh SSN CONFIG WORK: kills `ssn train` with SIGKILL in the middle of an epoch,
# finishes it with --resume, and checks that the loss trajectory equals an uninterrupted run with
# the same seed; then predicts and evaluates the result.
set -eu
ssn=$1
config=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
"$ssn" synth --kind lidc-like --out "$work/data" --cases 200 --seed 3 > /dev/null
"$ssn" --threads 1 train --config-file "$config" --job-dir "$work/full" --data-dir "$work/data" \
  --random-seeds 7 > /dev/null

"$ssn" --threads 1 train --config-file "$config" --job-dir "$work/killed" --data-dir "$work/data" \
  --random-seeds 7 > /dev/null &
pid=$!
# Wait for the first epoch's checkpoint, then kill during the second epoch.
for _ in $(seq 1 600); do
  [ -f "$work/killed/train_log.csv" ] && [ "$(wc -l < "$work/killed/train_log.csv")" -ge 2 ] && break
  sleep 0.05
done
sleep 0.1
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
lines=$(wc -l < "$work/killed/train_log.csv")
echo "killed after $((lines - 1)) complete epoch(s)"
[ "$lines" -ge 2 ] || { echo "killed before the first epoch ended; the resume starts at 0"; exit 1; }
[ "$lines" -lt 5 ] || { echo "the run finished before the kill; nothing was tested"; exit 1; }
cp "$work/killed/train_log.csv" "$work/log_before_resume.csv"
"$ssn" --threads 1 train --config-file "$config" --job-dir "$work/killed" --data-dir "$work/data" \
  --random-seeds 7 --resume > /dev/null

# The rows written before the kill are kept byte for byte (their seconds too: not recomputed), and
# the resumed run starts at the epoch after them.
before=$(wc -l < "$work/log_before_resume.csv")
head -n "$before" "$work/killed/train_log.csv" | cmp - "$work/log_before_resume.csv"
python3 - "$work/full/train_log.csv" "$work/killed/train_log.csv" <<'PY'
import csv, math, sys
full = list(csv.DictReader(open(sys.argv[1])))
resumed = list(csv.DictReader(open(sys.argv[2])))
assert [int(r["epoch"]) for r in resumed] == [1, 2, 3, 4], [r["epoch"] for r in resumed]
assert len(full) == len(resumed) == 4, (len(full), len(resumed))
for a, b in zip(full, resumed):
    for key in ("train_loss", "val_loss", "val_ged", "lr"):
        x, y = float(a[key]), float(b[key])
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), f"epoch {a['epoch']} {key}: {x} vs {y}"
print("loss trajectories match:", [round(float(r["train_loss"]), 4) for r in full])
PY
"$ssn" predict --config-file "$work/killed/config.json" --checkpoint "$work/killed/checkpoint_last.pt" \
  --data-dir "$work/data" --split test --out "$work/predictions" > /dev/null
"$ssn" evaluate --predictions "$work/predictions" --out "$work/evaluation" --num-samples 8 > /dev/null
test -f "$work/evaluation/summary.json"
echo ok
