#!/usr/bin/env bash
# run_micro.sh [BUILD_DIR]: runs ssn's micro benchmarks and the PyTorch baseline in the same run,
# with the same thread count and device (SSN_BENCH_DEVICE=cpu|cuda), and prints the table of
# docs/performance.md.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
threads=${SSN_BENCH_THREADS:-$(nproc)}
device=${SSN_BENCH_DEVICE:-cpu}
python=${SSN_PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
SSN_BENCH_DEVICE=$device SSN_BENCH_THREADS=$threads "$build/bench/ssn_micro_bench" --benchmark_min_time=2 \
  --benchmark_out="$out/ours.json" --benchmark_out_format=json >&2
"$python" "$here/pytorch_micro.py" "$threads" 20 "$device" > "$out/pytorch.json"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
"$python" "$here/compare_micro.py" "$out/ours.json" "$out/pytorch.json"
