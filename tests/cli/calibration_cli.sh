#!/usr/bin/env bash
# calibration_cli.sh SSN DEMO_OUT WORK: the calibration of the demo's low-rank job, end to end.
#   - ssn train wrote JOB/calibration.json, ssn predict carried it into predictions/, and the
#     demo's evaluation used it (summary.json "sampling");
#   - ssn calibrate on a copy of the job fits the same values again (a fixed seed);
#   - predict does not carry it for another checkpoint, and says so;
#   - evaluate and sample apply it by default, --no-calibration and --temperature override it;
#   - the report shows it; bad input fails with exit 1 and a message that names what is wrong.
set -uo pipefail
ssn=$1 demo=$2 work=$3
source "$(dirname "$0")/checks.sh"
rm -rf "$work"
mkdir -p "$work"
job=$demo/lowrank

json() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

[ -f "$job/calibration.json" ] || fail "ssn train wrote no $job/calibration.json"
cmp -s "$job/calibration.json" "$job/predictions/calibration.json" ||
  fail "predict did not carry calibration.json into the predictions folder"
temperature=$(json "$job/calibration.json" 'd["temperature"]')
used=$(json "$job/evaluation/summary.json" 'd["sampling"]["temperature"]')
[ "$temperature" = "$used" ] || fail "the demo evaluated at temperature $used, calibrated $temperature"
echo "ok: trained, carried and applied: temperature $temperature"

cp -r "$job" "$work/job"
rm "$work/job/calibration.json"
"$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" > "$work/calibrate.log" ||
  fail "ssn calibrate failed: $(cat "$work/calibrate.log")"
grep -q "temperature" "$work/calibrate.log" || fail "calibrate printed no temperature"
refit=$(json "$work/job/calibration.json" '(d["temperature"], d["class_weights"], d["validation"]["after"]["ged"], d["band_reference"])')
first=$(json "$job/calibration.json" '(d["temperature"], d["class_weights"], d["validation"]["after"]["ged"], d["band_reference"])')
[ "$refit" = "$first" ] || fail "ssn calibrate fitted $refit, ssn train $first"
ls "$work/job" | grep -q partial && fail "calibrate left its scratch folder behind"
echo "ok: ssn calibrate fits the same again: $refit"
# The band's reference: the annotators' diversity over every training and validation image,
# recomputed here from the PNGs (centre crop, blocks averaged to data.size, >= 0.5; the mean IoU
# distance over all ordered pairs, self-pairs included, two empty masks at distance 0).
/usr/bin/python3 - "$work/job/calibration.json" "$work/job/config.json" "$demo/data" <<'PY' ||
import glob, json, os, sys
import numpy as np
from PIL import Image
calibration, config, data = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
crop, size = config["data"].get("crop", 128), config["data"].get("size", 128)
def reduced(path):
    m = np.array(Image.open(path)) > 0
    top, left = (m.shape[0] - crop) // 2, (m.shape[1] - crop) // 2
    m = m[top:top + crop, left:left + crop].astype(np.float64)
    f = crop // size
    return (m.reshape(size, f, size, f).mean((1, 3)) >= 0.5).ravel()
values = []
for split in ("train", "val"):
    for image in sorted(glob.glob(os.path.join(data, split, "images", "*", "*.png"))):
        gt = os.path.join(data, split, "gt", os.path.basename(os.path.dirname(image)))
        stem = os.path.basename(image)[:-4]
        masks = [reduced(p) for p in sorted(glob.glob(os.path.join(gt, stem + "_l*.png")))]
        d = [0.0 if not (a | b).any() else 1 - (a & b).sum() / (a | b).sum()
             for a in masks for b in masks]
        values.append(np.mean(d))
band = calibration["band_reference"]
assert band["num_cases"] == len(values), (band["num_cases"], len(values))
assert abs(band["annotator_diversity"] - np.mean(values)) < 1e-6, (band, np.mean(values))
assert abs(calibration["validation"]["annotator_diversity"] - band["annotator_diversity"]) > 1e-9
print(f"ok: the band's reference is the annotators' diversity over {len(values)} training and "
      f"validation images, {np.mean(values):.4f} (validation cases: "
      f"{calibration['validation']['annotator_diversity']:.4f})")
PY
  fail "calibration.json's band_reference is not the training and validation annotators' diversity"
grep -q "over all [0-9]* training and validation images" "$work/calibrate.log" ||
  fail "calibrate did not print the band's reference: $(cat "$work/calibrate.log")"
# A data folder with the validation split alone: the reference is that split's.
mkdir -p "$work/val_only" && cp -r "$demo/data/val" "$work/val_only/"
cp -r "$work/job" "$work/job_val_only"
"$ssn" calibrate --job-dir "$work/job_val_only" --data-dir "$work/val_only" > /dev/null ||
  fail "ssn calibrate with a validation split alone failed"
val_images=$(find "$demo/data/val/images" -name '*.png' | wc -l)
[ "$(json "$work/job_val_only/calibration.json" 'd["band_reference"]["num_cases"]')" = "$val_images" ] ||
  fail "with the validation split alone, the band's reference is not over its $val_images images"
band=$(json "$work/job/calibration.json" 'd["max_diversity_ratio"]')
[ "$band" = "1.25" ] || fail "calibration.json records the diversity band $band, expected 1.25"
"$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" --max-diversity-ratio 0 > "$work/calibrate0.log" ||
  fail "ssn calibrate --max-diversity-ratio 0 failed: $(cat "$work/calibrate0.log")"
band=$(json "$work/job/calibration.json" '(d["max_diversity_ratio"], d["criterion"])')
[ "$band" = "(0.0, 'no whole-image samples, then lowest validation GED')" ] ||
  fail "--max-diversity-ratio 0 wrote $band"
"$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" --max-diversity-ratio 0 \
  --allow-whole-image-samples > "$work/calibrate0.log" ||
  fail "ssn calibrate --allow-whole-image-samples failed: $(cat "$work/calibrate0.log")"
band=$(json "$work/job/calibration.json" '(d["avoid_whole_image_samples"], d["criterion"])')
[ "$band" = "(False, 'lowest validation GED')" ] || fail "--allow-whole-image-samples wrote $band"
"$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" > /dev/null || fail "ssn calibrate failed"

# Another checkpoint: not carried, and said so. (A calibration whose CRC-32 names other bytes
# stands for one fitted before the checkpoint changed.)
cp -r "$work/job" "$work/stale"
/usr/bin/python3 - "$work/stale/calibration.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["checkpoint"]["crc32"] ^= 1
json.dump(d, open(sys.argv[1], "w"))
PY
"$ssn" predict --config-file "$job/config.json" --checkpoint "$work/stale/checkpoint_best.pt" \
  --data-dir "$demo/data" --out "$work/stale_predictions" 2> "$work/stale.err" > /dev/null ||
  fail "predict with a stale calibration failed"
[ ! -e "$work/stale_predictions/calibration.json" ] || fail "a stale calibration was carried"
grep -q "was fitted for checkpoint_best.pt, not for this checkpoint_best.pt" "$work/stale.err" ||
  fail "predict did not say why its predictions are uncalibrated: $(cat "$work/stale.err")"
"$ssn" predict --config-file "$job/config.json" --checkpoint "$work/job/checkpoint_best.pt" \
  --data-dir "$demo/data" --out "$work/nocal" --no-calibration > /dev/null
[ ! -e "$work/nocal/calibration.json" ] || fail "predict --no-calibration carried it"
echo "ok: carried only for its checkpoint"

# evaluate and sample: by default calibrated; the flags override.
"$ssn" evaluate --predictions "$job/predictions" --num-samples 8 --out "$work/e_cal" > "$work/e.log"
grep -q "^sampling: calibrated: temperature" "$work/e.log" || fail "evaluate did not say it calibrates"
[ "$(json "$work/e_cal/summary.json" 'd["sampling"]["temperature"]')" = "$temperature" ] ||
  fail "evaluate --predictions did not apply the calibration"
"$ssn" evaluate --predictions "$job/predictions" --num-samples 8 --no-calibration --out "$work/e1" > /dev/null
[ "$(json "$work/e1/summary.json" 'd["sampling"]["temperature"]')" = "1.0" ] ||
  fail "--no-calibration did not sample at temperature 1"
"$ssn" evaluate --predictions "$job/predictions" --num-samples 8 --temperature 0.5 --out "$work/e5" > /dev/null
[ "$(json "$work/e5/summary.json" 'd["sampling"]["temperature"]')" = "0.5" ] ||
  fail "--temperature did not override the calibration"
"$ssn" sample --predictions "$job/predictions" --num-samples 2 --out "$work/s" | grep -q "calibrated" ||
  fail "sample did not apply the calibration"
"$ssn" sample --predictions "$job/predictions" --num-samples 2 --temperature 0.8 --out "$work/s08" > /dev/null ||
  fail "sample refused a fractional --temperature"
echo "ok: evaluate and sample apply it; --no-calibration and --temperature override it"

"$ssn" report --job-dir "$job" --out "$work/report.html" --num-cases 1 > /dev/null
grep -q "<h3>Calibration</h3>" "$work/report.html" || fail "the report has no calibration section"
grep -q "drawn with the calibration" "$work/report.html" || fail "the report's samples are not calibrated"
grep -q "measured over all [0-9]* training and validation images" "$work/report.html" ||
  fail "the report does not say what the band's reference was measured on"
grep -q "preferring the settings that draw no whole-image sample" "$work/report.html" ||
  fail "the report does not say the calibration avoided whole-image samples"
echo "ok: the report shows it"

# Bad input.
cp -r "$job/predictions" "$work/bad_predictions"
echo '{"format": "ssn-calibration", "version": 1, "temperature": "hot"}' > "$work/bad_predictions/calibration.json"
expect_failure "a damaged calibration.json" "calibration.json: field temperature: expected a number" \
  "$ssn" evaluate --predictions "$work/bad_predictions" --out "$work/e_bad"
expect_failure "calibrate a deterministic job" "deterministic model: it has no distribution" \
  "$ssn" calibrate --job-dir "$demo/deterministic" --data-dir "$demo/data"
expect_failure "calibrate a checkpoint outside the job" "--checkpoint: expected a file name of the job folder" \
  "$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" --checkpoint ../x.pt
expect_failure "calibrate a missing checkpoint" "no checkpoint_epoch9.pt in" \
  "$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" --checkpoint checkpoint_epoch9.pt
expect_failure "calibrate a folder that is no job" "has no config.json: not a job folder" \
  "$ssn" calibrate --job-dir "$work" --data-dir "$demo/data"
expect_failure "a diversity band below 1" "--max-diversity-ratio: expected 0 or a finite number >= 1, got 0.5" \
  "$ssn" calibrate --job-dir "$work/job" --data-dir "$demo/data" --max-diversity-ratio 0.5
expect_failure "a negative temperature" "--temperature: expected a finite number >= 0, got -1" \
  "$ssn" sample --predictions "$job/predictions" --num-samples 2 --temperature -1 --out "$work/t"
expect_failure "--temperature with --samples" "apply to --predictions only" \
  "$ssn" evaluate --samples "$work/s" --temperature 0.5 --out "$work/e_s"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
