#!/usr/bin/env bash
# sample_cli.sh SSN PREDICTIONS WORK: `ssn sample` on a predictions folder of ssn predict:
# temperature 0 and class weights 0 reproduce the argmax of the mean exactly, the same --seed gives
# identical files, and bad input fails with a clear message and writes nothing.
set -euo pipefail
ssn=$1 predictions=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

same_pixels() {  # same_pixels SAMPLES_DIR: every <id>_s<i>.png equals <id>_prediction.png
  /usr/bin/python3 - "$1" "$predictions" <<'PY'
import pathlib, sys
import numpy as np
from PIL import Image
samples, predictions = map(pathlib.Path, sys.argv[1:])
checked = 0
for sample in sorted(samples.glob("*_s*.png")):
    case = sample.name.rsplit("_s", 1)[0]
    mean = np.asarray(Image.open(predictions / f"{case}_prediction.png"))
    if not np.array_equal(np.asarray(Image.open(sample)), mean):
        sys.exit(f"{sample} differs from the argmax of the mean")
    checked += 1
assert checked > 0, "no samples"
print(f"{checked} samples equal the argmax of the mean")
PY
}

"$ssn" sample --predictions "$predictions" --num-samples 3 --temperature 0 --out "$work/t0"
same_pixels "$work/t0"
"$ssn" sample --predictions "$predictions" --num-samples 3 --class-weights 0,0 --out "$work/w0"
same_pixels "$work/w0"

"$ssn" sample --predictions "$predictions" --num-samples 4 --seed 7 --out "$work/a"
"$ssn" sample --predictions "$predictions" --num-samples 4 --seed 7 --out "$work/b"
diff -r "$work/a" "$work/b" || fail "the same --seed gave different files"
"$ssn" sample --predictions "$predictions" --num-samples 4 --seed 8 --out "$work/c"
if diff -rq "$work/a" "$work/c" > /dev/null; then fail "--seed 7 and 8 gave identical files"; fi
"$ssn" evaluate --samples "$work/a" --out "$work/a_eval" > /dev/null  # a samples folder
"$ssn" sample --predictions "$predictions" --num-samples 3 --sweep temperature --out "$work/sweep"
ls "$work/sweep" | grep -q '_sweep_temperature.png$' || fail "no sweep figure"

expect_error() {  # expect_error PATTERN OUT ARGS...: fails with PATTERN on stderr, OUT not created
  local pattern=$1 out=$2
  shift 2
  if "$ssn" "$@" 2> "$work/stderr"; then fail "expected an error from: $*"; fi
  grep -Eq -- "$pattern" "$work/stderr" || fail "stderr of '$*' lacks '$pattern': $(cat "$work/stderr")"
  [ ! -e "$out" ] || fail "$out was written although '$*' failed"
  ls "$work" | grep -q partial && fail "a staging folder was left behind"
  echo "ok: $(head -1 "$work/stderr")"
}
expect_error "ssn: error: --num-samples: Value 0 not in range" "$work/e1" \
  sample --predictions "$predictions" --num-samples 0 --out "$work/e1"
expect_error "ssn: error: class weights: 3 values, but .* has C = 2 classes" "$work/e2" \
  sample --predictions "$predictions" --num-samples 2 --class-weights 1,1,1 --out "$work/e2"
mkdir -p "$work/empty"
expect_error "ssn: error: predictions folder .*/empty has no prediction.csv" "$work/e3" \
  sample --predictions "$work/empty" --num-samples 2 --out "$work/e3"
expect_error "ssn: error: --sweep: 'rank': expected 'temperature' or 'class:<c>'" "$work/e4" \
  sample --predictions "$predictions" --num-samples 2 --sweep rank --out "$work/e4"
expect_error "ssn: error: --device: .*gpu" "$work/e5" \
  sample --predictions "$predictions" --num-samples 2 --device gpu --out "$work/e5"
if ! command -v nvidia-smi > /dev/null; then
  expect_error "ssn: error: --device: device cuda: this LibTorch build has no usable CUDA device" \
    "$work/e6" sample --predictions "$predictions" --num-samples 2 --device cuda --out "$work/e6"
fi
expect_error "ssn: error: --temperature / --class-weights / --no-calibration / --device: apply to --predictions only" \
  "$work/e7" evaluate --samples "$work/a" --device cuda --out "$work/e7"
# --device cpu is the default: the same files.
"$ssn" sample --predictions "$predictions" --num-samples 4 --seed 7 --device cpu --out "$work/a_cpu"
diff -r "$work/a" "$work/a_cpu" || fail "--device cpu changed the samples"
echo "sample CLI checks passed"
