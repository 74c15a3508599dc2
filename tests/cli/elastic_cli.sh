#!/usr/bin/env bash
# elastic_cli.sh SSN SOURCE_DIR BRATS_TINY WORK: the reference's elastic deformation.
#   - the displacement field of `ssn benchmark elastic` equals the reference's definition stated
#     independently in numpy (tests/python/elastic_noise.py: RandomState(843) gradients, Perlin
#     noise, rounding) for the reference's settings and for an odd one (period 1 pads the noise);
#     skipped, saying so, without /usr/bin/python3 and numpy;
#   - a config with the reference's augmentation block trains with it, without a warning.
set -u
ssn=$(realpath "$1")
source_dir=$(realpath "$2")
brats=$(realpath "$3")
work=$4
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
source "$(dirname "$0")/checks.sh"
python=/usr/bin/python3
reference=$source_dir/tests/data/reference/rank_10_mc_20_patch_110.json

with_augmentation() {  # with_augmentation BASE OUT PERIOD ALPHA NOISE_SHAPE PROB
  "$python" - "$@" <<'PY'
import json, sys
base, out, period, alpha, noise, prob = sys.argv[1:]
c = json.load(open(base))
c["training"]["augmentation"] = {"RandomElasticDeformationCoarsePerlinNoise": {
    "period": json.loads(period), "alpha": float(alpha), "noise_shape": json.loads(noise),
    "prob": float(prob), "num_maps": 3}}
json.dump(c, open(out, "w"))
PY
}

if "$python" -c 'import numpy' 2>/dev/null; then
  with_augmentation "$reference" "$work/odd.json" "[3, 2, 1]" 7 "[30, 31, 20]" 0.5
  for case in "$reference 400,400,400 5,5,5 20 40,48,48" "$work/odd.json 30,31,20 3,2,1 7 30,25,20"; do
    set -- $case
    "$ssn" benchmark elastic --config-file "$1" --shape "$5" --repeats 1 --json > "$work/ssn.json" ||
      fail "ssn benchmark elastic failed on $1"
    "$python" "$source_dir/tests/python/elastic_noise.py" "$2" "$3" "$4" "$5" > "$work/numpy.json" ||
      fail "elastic_noise.py failed"
    "$python" - "$work/ssn.json" "$work/numpy.json" "$5" <<'PY' || fail "field of $case differs"
import json, sys
ours = json.load(open(sys.argv[1]))["field"]
theirs = json.load(open(sys.argv[2]))
for key in ("mean", "std", "max_abs", "sum_of_squares"):
    assert abs(ours[key] - theirs[key]) <= 1e-9 * max(1.0, abs(theirs[key])), (key, ours, theirs)
print("ok: field on", sys.argv[3], "equals the reference's:", ours)
PY
  done
else
  echo "SKIP (part): $python with numpy is needed for the reference's field"
fi

# Training with the augmentation (every case deformed): no warning, a finite loss.
with_augmentation "$source_dir/tests/data/tiny_brats.json" "$work/tiny_elastic.json" "[5, 5, 5]" 20 \
  "[400, 400, 400]" 1.0
"$ssn" train --config-file "$work/tiny_elastic.json" --job-dir "$work/job" \
  --train-csv-path "$brats/train.csv" --valid-csv-path "$brats/valid.csv" > "$work/train.log" 2>&1 ||
  fail "training with the elastic deformation failed: $(tail -c 600 "$work/train.log")"
grep -qi "warning" "$work/train.log" && fail "training warned: $(grep -i warning "$work/train.log")"
grep -q "^epoch   1  train loss [0-9]" "$work/train.log" || fail "no finite training loss: $(cat "$work/train.log")"
echo "ok: trained with the reference's elastic deformation, no warning"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
