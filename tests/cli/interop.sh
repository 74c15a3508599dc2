#!/usr/bin/env bash
# interop.sh SSN SOURCE_DIR WORK: the Python world's files through the binary, checked by Python
# (/usr/bin/python3 with torch, numpy, h5py and PIL; skipped, saying so, where they are absent).
#   - convert-lidc on data_lidc.pickle (protocols 2, 4, 5) and data_lidc.hdf5 made from random
#     data: masks exact, images correlating >= 0.9999, no patient in two splits; ssn train on one;
#   - import-checkpoint of the reference's state_dict (zip, legacy format, inside a training
#     checkpoint dict) and export-checkpoint back: every tensor bit for bit in Python's torch.load
#     (weights_only too); a U-Net exported in ssn's names, re-imported, predicted and resumed;
#   - files that must be refused: a pickle that would run a command (nothing runs), a truncated
#     pickle, a foreign file, a mis-shaped checkpoint, an --out that exists;
#   - a predictions folder as the reference's inference.py writes it (vector NIfTI maps, its CSV
#     columns and paths): evaluate scores it as the same maps in ssn's layout; sample reads it.
set -u
ssn=$(realpath "$1")
source_dir=$(realpath "$2")
work=$3
python=/usr/bin/python3
if ! "$python" -c 'import torch, numpy, h5py, PIL' 2>/dev/null; then
  echo "SKIP: $python with torch, numpy, h5py and PIL is needed to write and check the files"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
source "$(dirname "$0")/checks.sh"
run() { "$@" >"$work/last.log" 2>&1 || { fail "$* exited $?: $(tail -c 600 "$work/last.log")"; return 1; }; }

# --- LIDC files ---
run "$python" "$source_dir/tests/python/lidc_fixtures.py" "$work/fixtures" 20261127
for input in data_lidc_p2.pickle data_lidc_p4.pickle data_lidc_p5.pickle data_lidc.hdf5; do
  kind=pickle
  [ "$input" = data_lidc.hdf5 ] && kind=hdf5
  if run "$ssn" convert-lidc --input "$work/fixtures/$input" --out "$work/$input.crops" --seed 3; then
    echo "ok: $(cat "$work/last.log")"
    "$python" "$source_dir/tests/python/check_lidc_conversion.py" "$work/$input.crops" \
      "$work/fixtures/truth.npz" "$kind" || fail "convert-lidc $input: the check above failed"
  fi
done
"$python" -c 'import json, sys; j = json.load(open(sys.argv[1])); assert j["format"] == "pickle" and j["seed"] == 3 and j["annotators"] == 4' \
  "$work/data_lidc_p2.pickle.crops/lidc_conversion.json" || fail "lidc_conversion.json missing or wrong"
# The same seed gives the same split whatever the protocol; another seed another split.
diff -rq "$work/data_lidc_p2.pickle.crops/test" "$work/data_lidc_p5.pickle.crops/test" >/dev/null ||
  fail "protocols 2 and 5 of one pickle give different splits"
run "$ssn" convert-lidc --input "$work/fixtures/data_lidc_p4.pickle" --out "$work/seed9" --seed 9
diff -rq "$work/seed9/test" "$work/data_lidc_p4.pickle.crops/test" >/dev/null &&
  fail "--seed 9 and --seed 3 give the same test split"
# An HDF5 file whose own split puts a patient in two splits: kept, with a warning.
"$python" - "$work/fixtures/data_lidc.hdf5" "$work/crossing.hdf5" <<'PY'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], 'r+') as f:
    f['test/uids'][0] = f['train/uids'][0]
PY
run "$ssn" convert-lidc --input "$work/crossing.hdf5" --out "$work/crossing" &&
  if grep -q "warning: 1 patients have slices in more than one split" "$work/last.log"; then
    echo "ok: a patient in two splits of an HDF5 file is reported"
  else
    fail "no warning for a patient in two splits: $(cat "$work/last.log")"
  fi
config=$source_dir/tests/data/tiny_lidc128.json
run "$ssn" train --config-file "$config" --data-dir "$work/data_lidc.hdf5.crops" --job-dir "$work/job" &&
  echo "ok: ssn train on the converted HDF5: $(tail -1 "$work/job/train_log.csv")"

"$python" - "$work" <<'PY'
import os, pickle, sys
work = sys.argv[1]
class RunsACommand:
    def __reduce__(self):
        return (os.system, ('touch ' + os.path.join(work, 'pwned'),))
with open(os.path.join(work, 'evil.pickle'), 'wb') as f:
    pickle.dump({'slice': {'image': RunsACommand()}}, f, protocol=4)
data = open(os.path.join(work, 'fixtures', 'data_lidc_p4.pickle'), 'rb').read()
open(os.path.join(work, 'truncated.pickle'), 'wb').write(data[:len(data) // 2])
import torch
torch.save({'w': torch.zeros(2), 'evil': RunsACommand()}, os.path.join(work, 'evil.pt'))
PY
expect_failure "convert-lidc refuses a pickle that runs a command" \
  "ssn: error: .*evil.pickle: refuses to build posix.system" \
  "$ssn" convert-lidc --input "$work/evil.pickle" --out "$work/evil_out"
expect_failure "convert-lidc refuses a truncated pickle" "ssn: error: .*truncated.pickle: .*truncated" \
  "$ssn" convert-lidc --input "$work/truncated.pickle" --out "$work/truncated_out"
expect_failure "convert-lidc refuses a foreign file" \
  "ssn: error: .*tiny_lidc128.json is neither a pickle .* nor an HDF5 file" \
  "$ssn" convert-lidc --input "$config" --out "$work/foreign_out"
expect_failure "import-checkpoint refuses a checkpoint that runs a command" \
  "ssn: error: .*evil.pt \(data.pkl\): refuses to build posix.system" \
  "$ssn" import-checkpoint --pytorch "$work/evil.pt" --config-file "$config" --out "$work/evil_ck.pt"
[ -e "$work/pwned" ] && fail "a pickle ran a command"
for out in evil_out truncated_out foreign_out evil_ck.pt; do
  [ -e "$work/$out" ] && fail "a refused input left $out"
done

# --- Checkpoints ---
golden=$source_dir/tests/data/golden/deepmedic_2d/state_dict.pt
"$python" - "$golden" "$work" <<'PY'
import sys, torch
source, work = sys.argv[1], sys.argv[2]
sd = torch.load(source)
torch.save(sd, work + '/legacy.pt', _use_new_zipfile_serialization=False)
optimizer = {'state': {0: {'step': torch.tensor(3.0), 'square_avg': torch.zeros(4)}},
             'param_groups': [{'lr': 1e-3, 'alpha': 0.9, 'params': [0]}]}
torch.save({'epoch': 12, 'model': sd, 'optimizer': optimizer}, work + '/training.pt')
bad = dict(sd)
bad['mean_l.weight'] = torch.zeros(4, 50, 1)
torch.save(bad, work + '/misshaped.pt')
PY
python3_config=$work/reference_2d.json
"$python" - "$source_dir/tests/data/reference/rank_10_mc_20_patch_110.json" "$python3_config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c['model']['StochasticDeepMedic']['dimensions'] = 2
del c['training']['patch_augmentation']
json.dump(c, open(sys.argv[2], 'w'))
PY
for source in "$golden" "$work/legacy.pt" "$work/training.pt"; do
  name=$(basename "$source" .pt)
  run "$ssn" import-checkpoint --pytorch "$source" --config-file "$python3_config" \
    --out "$work/$name.ssn.pt" && echo "ok: $(cat "$work/last.log")" &&
    run "$ssn" export-checkpoint --checkpoint "$work/$name.ssn.pt" --pytorch "$work/$name.back.pt" &&
    "$python" - "$golden" "$work/$name.back.pt" <<'PY' || fail "$name: the round trip is not exact"
import sys, collections, torch
a = torch.load(sys.argv[1])
b = torch.load(sys.argv[2], weights_only=True)
assert isinstance(b, collections.OrderedDict) and list(a) == list(b), 'names or order differ'
bad = [k for k in a if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
assert not bad, 'tensors differ: %s' % bad[:3]
print('ok: %s: %d tensors bit for bit after import and export' % (sys.argv[2], len(b)))
PY
done
expect_failure "import-checkpoint names a mis-shaped tensor" \
  "ssn: error: .*misshaped.pt: tensor mean_l.weight has shape \[4, 50, 1\], the config's model needs \[4, 50, 1, 1\]" \
  "$ssn" import-checkpoint --pytorch "$work/misshaped.pt" --config-file "$python3_config" \
  --out "$work/misshaped.ssn.pt"
expect_failure "import-checkpoint names a missing tensor" \
  "ssn: error: .*state_dict.pt has no tensor encoder.0.0.weight \(ssn's backbone.encoder.0.0.weight\)" \
  "$ssn" import-checkpoint --pytorch "$golden" --config-file "$config" --out "$work/wrong_model.pt"
expect_failure "import-checkpoint keeps an existing --out" "ssn: error: --out .* already exists" \
  "$ssn" import-checkpoint --pytorch "$golden" --config-file "$python3_config" \
  --out "$work/state_dict.ssn.pt"
expect_failure "export-checkpoint keeps an existing --pytorch" "ssn: error: --pytorch .* already exists" \
  "$ssn" export-checkpoint --checkpoint "$work/job/checkpoint_last.pt" --pytorch "$golden"

# ssn's own U-Net: exported in ssn's names, re-imported, predicted, resumed.
run "$ssn" export-checkpoint --checkpoint "$work/job/checkpoint_last.pt" --pytorch "$work/unet.pt" &&
  "$python" - "$work/unet.pt" <<'PY' || fail "the U-Net export is not a state_dict in ssn's names"
import sys, torch
sd = torch.load(sys.argv[1], weights_only=True)
assert all(k.startswith(('backbone.', 'head.')) for k in sd), list(sd)[:3]
print('ok: U-Net exported as %d tensors in ssn names' % len(sd))
PY
run "$ssn" import-checkpoint --pytorch "$work/unet.pt" --config-file "$config" \
  --job-dir "$work/resumed" &&
  run "$ssn" export-checkpoint --checkpoint "$work/resumed/checkpoint_last.pt" \
    --pytorch "$work/unet_again.pt" &&
  "$python" - "$work/unet.pt" "$work/unet_again.pt" <<'PY' || fail "U-Net round trip not exact"
import sys, torch
a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
print('ok: U-Net import and export round trip bit for bit')
PY
run "$ssn" predict --config-file "$config" --checkpoint "$work/resumed/checkpoint_last.pt" \
  --data-dir "$work/data_lidc.hdf5.crops" --split test --out "$work/predictions" &&
  echo "ok: predict with an imported checkpoint: $(cat "$work/last.log")"
run "$ssn" train --config-file "$config" --data-dir "$work/data_lidc.hdf5.crops" \
  --job-dir "$work/resumed" --resume --num-epochs 1 &&
  echo "ok: train --resume from an imported checkpoint: $(tail -1 "$work/resumed/train_log.csv")"

# --- The reference's predictions folder ---
# Scored by ssn evaluate exactly as the same maps in ssn's own layout; sampled by ssn sample.
run "$python" "$source_dir/tests/python/reference_predictions.py" "$work/reference" 7
reference_predictions=$work/reference/run/job/predictions
if run "$ssn" evaluate --predictions "$reference_predictions" --num-samples 8 --num-classes 4 \
  --seed 5 --out "$work/reference/scored_reference" &&
  run "$ssn" evaluate --predictions "$work/reference/ssn" --num-samples 8 --num-classes 4 \
    --seed 5 --out "$work/reference/scored_ssn"; then
  if cmp -s "$work/reference/scored_reference/metrics.csv" "$work/reference/scored_ssn/metrics.csv"; then
    echo "ok: the reference's folder scores as the same maps in ssn's layout: $(grep ged "$work/last.log")"
  else
    fail "the reference's folder and ssn's layout of the same maps score differently"
  fi
fi
# Without --num-classes, K comes from the maps, and --brats-regions is suggested for 4 classes.
run "$ssn" evaluate --predictions "$reference_predictions" --num-samples 2 \
  --out "$work/reference/scored_default" &&
  if grep -q "^4 classes (the channels of the mean maps); for BraTS labels, --brats-regions" \
    "$work/last.log"; then
    echo "ok: evaluate takes the number of classes from the maps"
  else
    fail "evaluate did not infer 4 classes: $(head -3 "$work/last.log")"
  fi
run "$ssn" sample --predictions "$reference_predictions" --num-samples 3 \
  --out "$work/reference/samples" && echo "ok: ssn sample on the reference's folder"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all interop checks passed"
