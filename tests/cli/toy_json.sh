#!/usr/bin/env bash
# toy_json.sh SSN [OUT]: `ssn toy --json [--out OUT]` meets the issue's targets (low-rank >= -1.05,
# diagonal <= -4.0), prints valid JSON and, with OUT, writes the figure.
set -eu
ssn=$1
out=${2:-}
if [ -n "$out" ]; then
  rm -rf "$out"
  json=$("$ssn" toy --json --out "$out")
else
  json=$("$ssn" toy --json)
fi
echo "$json"
python3 - "$json" "${out:+$out/toy.png}" <<'PY'
import json, sys
result = json.loads(sys.argv[1])
assert set(result) == {"low_rank", "diagonal"}, result
low, diag = result["low_rank"]["loglikelihood"], result["diagonal"]["loglikelihood"]
assert low >= -1.05, f"low-rank log-likelihood {low} < -1.05"
assert diag <= -4.0, f"diagonal log-likelihood {diag} > -4.0"
if sys.argv[2]:
    with open(sys.argv[2], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "toy.png is not a PNG"
print("ok")
PY
