#!/usr/bin/env bash
# commands_cli.sh SSN BRATS_TINY WORK: the commands without a test of their own, run as a user runs
# them on the tiny brats-like set: preprocess-brats (from a BraTS-challenge layout copy of it),
# index-nnunet (from an nnU-Net raw layout of it), benchmark predict and benchmark
# evaluate, each checked for its exit code and what it writes.
set -eu
ssn=$1
brats=$2
work=$3
rm -rf "$work"
mkdir -p "$work"

# A BraTS-challenge layout: <case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz.
python3 - "$brats" "$work/brats_raw" <<'PY'
import csv, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for split in ("train", "valid", "test"):
    for row in csv.DictReader(open(os.path.join(src, split + ".csv"))):
        case = row["id"]
        os.makedirs(os.path.join(dst, case), exist_ok=True)
        for channel in ("flair", "t1", "t1ce", "t2", "seg"):
            shutil.copy(os.path.join(src, row[channel]), os.path.join(dst, case, f"{case}_{channel}.nii.gz"))
PY
"$ssn" preprocess-brats --input-dir "$work/brats_raw" --output-dir "$work/brats_pre" --seed 1
for split in train valid test; do
  test -f "$work/brats_pre/data_index_$split.csv"
done
total=$(cat "$work/brats_pre"/data_index_*.csv | grep -vc '^id,')
[ "$total" -eq 3 ] || { echo "expected 3 cases in the splits, got $total"; exit 1; }
head -1 "$work/brats_pre/data_index_train.csv" | grep -qx 'id,flair,t1,t1ce,t2,seg,sampling_mask'

# The nnU-Net raw layout of the same cases.
python3 - "$brats" "$work/nnunet" <<'PY'
import csv, json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(dst, "imagesTr")); os.makedirs(os.path.join(dst, "labelsTr"))
channels = ("flair", "t1", "t1ce", "t2")
for split in ("train", "valid", "test"):
    for row in csv.DictReader(open(os.path.join(src, split + ".csv"))):
        case = row["id"]
        for i, channel in enumerate(channels):
            shutil.copy(os.path.join(src, row[channel]), os.path.join(dst, "imagesTr", f"{case}_{i:04d}.nii.gz"))
        shutil.copy(os.path.join(src, row["seg"]), os.path.join(dst, "labelsTr", f"{case}.nii.gz"))
json.dump({"channel_names": {str(i): c.upper() for i, c in enumerate(channels)},
           "labels": {"background": 0, "a": 1, "b": 2, "c": 3}, "file_ending": ".nii.gz"},
          open(os.path.join(dst, "dataset.json"), "w"))
PY
"$ssn" index-nnunet --dataset-dir "$work/nnunet" --out "$work/nnunet_index"
head -1 "$work/nnunet_index/train.csv" | grep -qx 'id,flair,t1,t1ce,t2,seg'
total=$(cat "$work/nnunet_index"/{train,valid,test}.csv | grep -vc '^id,')
[ "$total" -eq 3 ] || { echo "expected 3 indexed cases, got $total"; exit 1; }

# Benchmarks: JSON with the fields docs/performance.md reports.
"$ssn" benchmark predict --config-file "$(dirname "$0")/../data/tiny_brats.json" --shape 24,28,26 \
  --json > "$work/predict.json"
python3 - "$work/predict.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["shape"] == [4, 24, 28, 26], r["shape"]
assert r["seconds"] > 0 and r["tiles"] >= 1 and r["peak_rss_bytes"] > 0, r
print("benchmark predict:", r["seconds"], "s,", r["tiles"], "tiles")
PY
"$ssn" benchmark evaluate --json --repeats 1 > "$work/evaluate.json"
python3 - "$work/evaluate.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rows = r if isinstance(r, list) else r.get("workloads", [r])
assert rows, r
print("benchmark evaluate:", json.dumps(r)[:200])
PY
echo ok
