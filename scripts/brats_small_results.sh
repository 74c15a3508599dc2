#!/usr/bin/env bash
# brats_small_results.sh [OUT] [BUILD]: the CPU-sized 3-D comparison of docs/results.md: a
# brats-like synthetic set (30 volumes: 18 train, 6 valid, 6 test), the two small DeepMedic configs
# trained with the same seed, whole test volumes predicted by tiling and evaluated with the BraTS
# regions over 20 samples per case (as the reference's BraTS evaluation).
set -euo pipefail
out=${1:-out/brats_small}
ssn=${2:-build}/ssn
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
[ -d "$out/data" ] || "$ssn" synth --kind brats-like --out "$out/data" --cases 30 --seed 0
for kind in lowrank deterministic; do
  start=$(date +%s)
  rm -rf "$out/$kind"
  "$ssn" train --config-file "$here/configs/brats_small_$kind.json" --job-dir "$out/$kind" \
    --train-csv-path "$out/data/train.csv" --valid-csv-path "$out/data/valid.csv" \
    --random-seeds 0 > "$out/$kind.train.txt"
  trained=$(date +%s)
  "$ssn" predict --config-file "$out/$kind/config.json" --checkpoint "$out/$kind/checkpoint_best.pt" \
    --test-csv-path "$out/data/test.csv" --out "$out/$kind/predictions" > /dev/null
  predicted=$(date +%s)
  "$ssn" evaluate --predictions "$out/$kind/predictions" --out "$out/$kind/evaluation" \
    --num-classes 4 --brats-regions --num-samples 20 --seed 0
  echo "$kind: trained in $(( trained - start )) s, predicted in $(( predicted - trained )) s," \
    "evaluated in $(( $(date +%s) - predicted )) s"
done
