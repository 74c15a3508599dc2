#!/usr/bin/env bash
# gpu-end-to-end.sh SSN OUT [DEVICE]: a user's whole job on DEVICE (default cuda), with the ssn
# binary SSN, everything written under OUT (which must not exist).
#   lidc-like: ssn synth (the demo's 1000 images, seed 0) -> ssn train configs/lidc_small_lowrank.json
#     (the demo's recipe; calibrates at the end) -> predict -> sample 16 per case -> evaluate 100
#     samples per case; sample and evaluate also on the CPU from the same predictions, to show the
#     device changes neither the samples nor the metrics.
#   brats-like: ssn synth (30 volumes) -> ssn train configs/brats_small_lowrank.json -> predict
#     (whole volumes, tiled) -> sample 4 per case -> evaluate with the BraTS regions, 20 samples.
# Prints each step's seconds and the metrics; exits non-zero at the first failing step.
# SSN_E2E_SMALL=1 runs a few cases and one epoch instead (to check the script on a CPU).
set -euo pipefail
ssn=$(realpath "$1")
out=${2:?usage: gpu-end-to-end.sh SSN OUT [DEVICE]}
device=${3:-cuda}
small=${SSN_E2E_SMALL:-0}
python=${SSN_PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
[ -e "$out" ] && { echo "gpu-end-to-end.sh: $out exists" >&2; exit 1; }
mkdir -p "$out"

# step NAME COMMAND...: runs COMMAND with its output in OUT/NAME.log; prints its seconds.
step() {
  local name=$1
  shift
  local start=$(date +%s%N)
  if ! "$@" > "$out/$name.log" 2>&1; then
    echo "FAILED: $name: $*"
    tail -25 "$out/$name.log"
    exit 1
  fi
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%-18s %4d.%d s\n' "$name" $(( ms / 1000 )) $(( ms % 1000 / 100 ))
}

# config SRC DST: SRC, cut to one epoch when small.
config() {
  "$python" - "$1" "$2" "$small" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
if sys.argv[3] == "1":
    t = c["training"]
    t["num_epochs"], t["mean_only_epochs"] = 2, 1
    if "images_per_epoch" in t:
        t["images_per_epoch"], t["patches_per_image"] = 4, 2
        c["valid"].update({"images_per_epoch": 2, "patches_per_image": 2, "eval_every": 1})
    else:
        c["valid"].update({"num_cases": 6, "eval_every": 1})
    for kind in ("StochasticSegmentationNetworkLossMCIntegral",):
        if kind in c["loss"]:
            c["loss"][kind]["num_mc_samples"] = 4
    c.pop("scheduler", None)
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}

metrics() {  # metrics SUMMARY_JSON NAMES...: "name mean +- stderr" per name
  "$python" - "$@" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print("  " + ", ".join(f"{k} {m[k]['mean']:.4f} ± {m[k]['stderr']:.4f}" for k in sys.argv[2:] if k in m))
PY
}

lidc_cases=1000
brats_cases=30
[ "$small" = 1 ] && lidc_cases=60 && brats_cases=6
echo "== lidc-like on $device ($lidc_cases images)"
l=$out/lidc
mkdir -p "$l"
config "$root/configs/lidc_small_lowrank.json" "$l/config.json"
step lidc.synth "$ssn" synth --kind lidc-like --out "$l/data" --cases "$lidc_cases" --seed 0
step lidc.train "$ssn" train --config-file "$l/config.json" --job-dir "$l/job" --data-dir "$l/data" \
  --random-seeds 0 --device "$device"
step lidc.predict "$ssn" predict --config-file "$l/job/config.json" \
  --checkpoint "$l/job/checkpoint_best.pt" --data-dir "$l/data" --split test \
  --out "$l/predictions" --device "$device"
step lidc.sample "$ssn" sample --predictions "$l/predictions" --num-samples 16 --seed 1 \
  --out "$l/samples" --device "$device"
step lidc.sample.cpu "$ssn" sample --predictions "$l/predictions" --num-samples 16 --seed 1 \
  --out "$l/samples_cpu" --device cpu
step lidc.evaluate "$ssn" evaluate --predictions "$l/predictions" --num-samples 100 --seed 0 \
  --out "$l/evaluation" --device "$device"
step lidc.evaluate.cpu "$ssn" evaluate --predictions "$l/predictions" --num-samples 100 --seed 0 \
  --out "$l/evaluation_cpu" --device cpu
tail -3 "$out/lidc.train.log"
echo " $device:"; metrics "$l/evaluation/summary.json" ged diversity annotator_diversity dice_1 loglikelihood
echo " cpu:"; metrics "$l/evaluation_cpu/summary.json" ged diversity annotator_diversity dice_1 loglikelihood
"$python" - "$l/samples" "$l/samples_cpu" <<'PY'
import glob, os, sys
import numpy as np
from PIL import Image
a, b = sys.argv[1], sys.argv[2]
files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(a, "*_s*.png")))
same = total = identical = 0
for f in files:
    x = np.asarray(Image.open(os.path.join(a, f)))
    y = np.asarray(Image.open(os.path.join(b, f)))
    same += int((x == y).sum()); total += x.size; identical += int((x == y).all())
print(f"  samples on the device vs the CPU: {identical} of {len(files)} files identical, "
      f"{same / total:.6f} of the pixels equal")
PY

echo "== brats-like on $device ($brats_cases volumes)"
b=$out/brats
mkdir -p "$b"
config "$root/configs/brats_small_lowrank.json" "$b/config.json"
step brats.synth "$ssn" synth --kind brats-like --out "$b/data" --cases "$brats_cases" --seed 0
step brats.train "$ssn" train --config-file "$b/config.json" --job-dir "$b/job" \
  --train-csv-path "$b/data/train.csv" --valid-csv-path "$b/data/valid.csv" --random-seeds 0 \
  --device "$device"
step brats.predict "$ssn" predict --config-file "$b/job/config.json" \
  --checkpoint "$b/job/checkpoint_best.pt" --test-csv-path "$b/data/test.csv" \
  --out "$b/predictions" --device "$device"
step brats.sample "$ssn" sample --predictions "$b/predictions" --num-samples 4 --seed 1 \
  --out "$b/samples" --device "$device"
step brats.evaluate "$ssn" evaluate --predictions "$b/predictions" --num-samples 20 --seed 0 \
  --num-classes 4 --brats-regions --out "$b/evaluation" --device "$device"
tail -3 "$out/brats.train.log"
metrics "$b/evaluation/summary.json" dice_wt dice_tc dice_et ged diversity
echo "end to end on $device: passed"
