#!/usr/bin/env bash
# run_sample.sh [BUILD_DIR]: `ssn benchmark sample` at BraTS size (4 classes x 155 x 240 x 240,
# rank 10, 20 samples) next to the reference's float64 sampler (bench/sample_reference.py) in the
# same run, same threads; prints seconds per sample, peak memory and the ratios.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
threads=${SSN_BENCH_THREADS:-$(nproc)}
shape=${SSN_BENCH_SHAPE:-155,240,240}
python=${SSN_PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/ssn" --threads "$threads" benchmark sample --shape "$shape" --rank 10 --classes 4 \
  --num-samples 20 --json > "$out/ours.json"
"$python" "$here/sample_reference.py" --shape "$shape" --rank 10 --classes 4 --num-samples 20 \
  --threads "$threads" > "$out/reference.json"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $threads threads"
"$python" - "$out" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1] + "/ours.json"))
ref = json.load(open(sys.argv[1] + "/reference.json"))
print("| sampler | s/sample | peak tensor MiB | peak RSS MiB |")
print("|---|---|---|---|")
for name, r in (("ssn (float32, chunked)", ours), ("reference (float64 LowRankMultivariateNormal)", ref)):
    print(f"| {name} | {r['seconds_per_sample']:.3f} | {r['peak_tensor_bytes'] / 2**20:.0f} | {r['peak_rss_bytes'] / 2**20:.0f} |")
print(f"speed: {ref['seconds_per_sample'] / ours['seconds_per_sample']:.1f}x the reference's; "
      f"peak tensor memory: {ours['peak_tensor_bytes'] / ref['peak_tensor_bytes']:.2f}x; "
      f"peak RSS: {ours['peak_rss_bytes'] / ref['peak_rss_bytes']:.2f}x")
PY
