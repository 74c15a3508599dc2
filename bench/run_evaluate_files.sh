#!/usr/bin/env bash
# run_evaluate_files.sh [BUILD_DIR]: 20 cases of 100 PNG samples + 4 PNG annotations (128 x 128,
# 0/255 masks) scored by `ssn evaluate --samples` and by the NumPy implementation of PHiSeg's loops
# reading the same files; both timed in-process (reading + scoring) and as whole processes
# (LibTorch's load for ssn, the interpreter and imports for Python); values must agree to 1e-12.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$here/evaluate_files.py" write "$work/samples"
start=$(date +%s.%N)
"$build/ssn" evaluate --samples "$work/samples" --out "$work/out" > "$work/ssn.txt"
end=$(date +%s.%N)
inside=$(sed -n 's/.* in \([0-9.e-]*\) s (reading.*/\1/p' "$work/ssn.txt")
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
/usr/bin/python3 "$here/evaluate_files.py" compare "$work/samples" "$work/out/metrics.csv" \
  "$inside" "$(echo "$end - $start" | bc)"
