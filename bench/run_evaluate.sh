#!/usr/bin/env bash
# run_evaluate.sh [BUILD_DIR]: `ssn benchmark evaluate` and the NumPy implementation of PHiSeg's
# loops on the very same maps, in the same run; prints the table of docs/performance.md and fails
# if a metric differs by more than 1e-12.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
"$build/ssn" benchmark evaluate --json --repeats 5 --data-out "$data" > "$data/ours.json"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
/usr/bin/python3 "$here/compare_evaluate.py" "$data"
