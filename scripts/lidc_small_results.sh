#!/usr/bin/env bash
# lidc_small_results.sh [OUT] [BUILD]: the CPU-sized comparison of docs/results.md: a lidc-like
# synthetic set (1000 images: 800 train, 100 val, 100 test), the three small configs trained with
# the same seed, predicted on the test split and evaluated with 100 samples per image.
set -euo pipefail
out=${1:-out/lidc_small}
ssn=${2:-build}/ssn
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
[ -d "$out/data" ] || "$ssn" synth --kind lidc-like --out "$out/data" --cases 1000 --seed 0
for kind in deterministic diagonal lowrank; do
  start=$(date +%s)
  "$ssn" train --config-file "$here/configs/lidc_small_$kind.json" --job-dir "$out/$kind" \
    --data-dir "$out/data" --random-seeds 0 > "$out/$kind.train.txt"
  echo "$kind: trained in $(( $(date +%s) - start )) s"
  rm -rf "$out/$kind/predictions" "$out/$kind/evaluation"
  "$ssn" predict --config-file "$out/$kind/config.json" --checkpoint "$out/$kind/checkpoint_best.pt" \
    --data-dir "$out/data" --split test --out "$out/$kind/predictions" > /dev/null
  "$ssn" evaluate --predictions "$out/$kind/predictions" --out "$out/$kind/evaluation" \
    --num-samples 100 --seed 0
done
