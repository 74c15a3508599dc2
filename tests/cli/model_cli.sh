#!/usr/bin/env bash
# model_cli.sh SSN SOURCE_DIR WORK: ssn model on the paper's configs.
#   - configs/lidc_unet_rank10.json has exactly the parameters, batch norm buffers and head output
#     shapes of PHiSeg's `proposed` network stated independently in PyTorch
#     (tests/python/phiseg_proposed.py; skipped, saying so, without /usr/bin/python3 and torch);
#   - the table and --json agree, the DeepMedic config is summarised, a bad U-Net key is refused
#     naming the file and the key.
set -u
ssn=$(realpath "$1")
source_dir=$(realpath "$2")
work=$3
rm -rf "$work"
mkdir -p "$work"
source "$(dirname "$0")/checks.sh"
python=/usr/bin/python3
json() { "$python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

config=$source_dir/configs/lidc_unet_rank10.json
"$ssn" model --config-file "$config" --json > "$work/model.json" || fail "ssn model --json failed"
"$ssn" model --config-file "$config" > "$work/model.txt" || fail "ssn model failed"
grep -q "^parameters: 10,320,568 (trainable 10,320,568)" "$work/model.txt" ||
  fail "the table's total: $(tail -1 "$work/model.txt")"
grep -q "recombination.6 *Conv2d" "$work/model.txt" || fail "the table lists no third recombination conv"

if "$python" -c 'import torch' 2>/dev/null; then
  "$python" "$source_dir/tests/python/phiseg_proposed.py" 2 10 128 > "$work/pytorch.json" ||
    fail "phiseg_proposed.py failed"
  for field in parameters buffers; do
    ours=$(json "$work/model.json" "d['$field']")
    theirs=$(json "$work/pytorch.json" "d['$field']")
    [ "$ours" = "$theirs" ] || fail "$field: ssn model $ours, PHiSeg's network in PyTorch $theirs"
  done
  ours=$(json "$work/model.json" "[l['output_shape'] for l in d['layers'][-3:]]")
  theirs=$(json "$work/pytorch.json" "d['shapes']")
  [ "$ours" = "$theirs" ] || fail "head output shapes: ssn model $ours, PyTorch $theirs"
  echo "ok: lidc_unet_rank10 = PHiSeg's proposed network: $(json "$work/pytorch.json" "d['parameters']") parameters"
else
  echo "SKIP (part): $python with torch is needed for the independent PyTorch statement"
fi

"$ssn" model --config-file "$source_dir/configs/brats_deepmedic_rank10.json" --json > "$work/dm.json" ||
  fail "ssn model on the DeepMedic config failed"
dm=$(json "$work/dm.json" "(d['input_shape'], d['layers'][-1]['output_shape'][1])")
echo "ok: DeepMedic: input and factor channels $dm"

sed 's/"pooling": "average"/"pooling": "min"/' "$config" > "$work/bad.json"
expect_failure "a bad pooling" "bad.json: model.StochasticUNet.pooling: pooling must be \"max\" or \"average\", got \"min\"" \
  "$ssn" model --config-file "$work/bad.json"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
