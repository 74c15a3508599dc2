#!/usr/bin/env bash
# reliability.sh SSN CONFIG WORK: misuse and faults a user meets, run through the binary. Each case
# must end with exit 1 and an "ssn: error:" line (never a crash, never exit 0 with a wrong result),
# leave no temporary file or staging folder behind, and keep every file that existed before it.
#   - a full disk (a 2 MiB tmpfs, where this machine lets the test mount one) under synth, sample,
#     sample --sweep, toy and train;
#   - two ssn train runs into one job folder at once;
#   - --resume with a config that changes the model (refused), or only other keys (the job's
#     config is used, and config.json is not rewritten);
#   - ssn demo --overwrite on a folder with a demo.json and a file the demo did not write;
#   - leftovers of a killed process, removed when the folder is next used;
#   - a rank or a batch that would need more memory than the machine has (refused with the estimate);
#   - a checkpoint with one flipped bit, and a truncated one.
set -u
ssn=$(realpath "$1")
config=$(realpath "$2")
work=$3
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
source "$(dirname "$0")/checks.sh"

# no_leftovers NAME DIR: no .ssn-tmp file or .ssn-partial folder anywhere under DIR.
no_leftovers() {
  local found
  found=$(find "$2" \( -name '.ssn-tmp*' -o -name '*.ssn-partial-*' \) 2>/dev/null | head -3)
  [ -z "$found" ] || fail "$1: left behind $found"
}

"$ssn" synth --kind lidc-like --out "$work/data" --cases 40 --seed 1 > /dev/null || exit 1
"$ssn" --threads 1 train --config-file "$config" --job-dir "$work/job" --data-dir "$work/data" \
  --num-epochs 1 > /dev/null || exit 1
"$ssn" predict --config-file "$config" --checkpoint "$work/job/checkpoint_last.pt" \
  --data-dir "$work/data" --split test --out "$work/predictions" > /dev/null || exit 1

# --- a full disk -------------------------------------------------------------------------------
full="$work/full"
mkdir -p "$full"
if mount -t tmpfs -o size=2m tmpfs "$full" 2>/dev/null; then
  echo "keep me" > "$full/existing.txt"
  expect_failure "synth on a full disk" "ssn: error: cannot write .*(not enough space|No space)" \
    "$ssn" synth --kind lidc-like --out "$full/data" --cases 200
  expect_failure "sample --sweep on a full disk" "ssn: error: cannot write" \
    "$ssn" sample --predictions "$work/predictions" --num-samples 400 --sweep temperature \
    --out "$full/sweep"
  dd if=/dev/zero of="$full/filler" bs=1k count=1700 2>/dev/null
  expect_failure "sample on a full disk" "ssn: error: cannot write" \
    "$ssn" sample --predictions "$work/predictions" --num-samples 300 --out "$full/samples"
  expect_failure "toy --out on a full disk" "ssn: error: cannot write .*toy.png" \
    "$ssn" toy --out "$full/toy" --mean-steps 10 --joint-steps 10
  [ ! -e "$full/toy" ] || fail "toy left the folder it created"
  dd if=/dev/zero of="$full/filler" bs=1k count=1950 2>/dev/null
  expect_failure "train checkpoint on a full disk" "ssn: error: cannot write .*checkpoint_(last|best).pt" \
    "$ssn" --threads 1 train --config-file "$config" --job-dir "$full/job" \
    --data-dir "$work/data" --num-epochs 1
  no_leftovers "full disk" "$full"
  [ "$(cat "$full/existing.txt")" = "keep me" ] || fail "a file that existed was changed"
  umount "$full"
else
  echo "skipped the full-disk cases: this machine does not let the test mount a tmpfs"
fi

# --- two runs into one job folder ---------------------------------------------------------------
"$ssn" --threads 1 train --config-file "$config" --job-dir "$work/shared" \
  --data-dir "$work/data" --num-epochs 500 > /dev/null 2>&1 &
first=$!
# Up to 2 minutes for the first checkpoint: under a parallel `make test` the first epoch can take
# longer than its 2 s alone, and a --resume before it exists is refused for another reason.
for _ in $(seq 1 2400); do [ -f "$work/shared/checkpoint_last.pt" ] && break; sleep 0.05; done
[ -f "$work/shared/checkpoint_last.pt" ] || fail "the first run wrote no checkpoint in 2 minutes"
expect_failure "a second train into a job folder in use" \
  "ssn: error: (job folder .*shared is in use by another ssn process|--job-dir: .*shared already holds a training run)" \
  "$ssn" --threads 1 train --config-file "$config" --job-dir "$work/shared" \
  --data-dir "$work/data" --num-epochs 1
expect_failure "--resume of a job that is still training" \
  "ssn: error: job folder .*shared is in use by another ssn process" \
  "$ssn" --threads 1 train --job-dir "$work/shared" --data-dir "$work/data" --resume
kill -0 "$first" 2>/dev/null || fail "the first run ended before the second started: nothing was tested"
kill "$first" 2>/dev/null
wait "$first" 2>/dev/null

# --- --resume with another config ---------------------------------------------------------------
python3 - "$config" "$work/deeper.json" "$work/longer.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
deeper = json.loads(json.dumps(config))
name = next(iter(deeper["model"]))
deeper["model"][name]["filters"] = deeper["model"][name].get("filters", [4, 8]) + [16]
json.dump(deeper, open(sys.argv[2], "w"))
config["valid"]["num_samples"] = config["valid"].get("num_samples", 4) + 2
json.dump(config, open(sys.argv[3], "w"))
PY
before=$(md5sum < "$work/job/config.json")
expect_failure "--resume with a config that changes the model" \
  "ssn: error: --config-file: .*deeper.json changes the model of the job .*filters" \
  "$ssn" train --config-file "$work/deeper.json" --job-dir "$work/job" --data-dir "$work/data" \
  --resume --num-epochs 2
stderr=$("$ssn" --threads 1 train --config-file "$work/longer.json" --job-dir "$work/job" \
  --data-dir "$work/data" --resume --num-epochs 2 2>&1 >/dev/null) ||
  fail "--resume with another validation setting: $stderr"
grep -q "ssn: note: --resume continues with .*config.json; .*longer.json differs in /valid/num_samples" \
  <<<"$stderr" || fail "no note about the ignored config: $stderr"
[ "$(md5sum < "$work/job/config.json")" = "$before" ] || fail "--resume rewrote config.json"
[ "$(grep -c '' "$work/job/train_log.csv")" -eq 3 ] || fail "the resumed run did not add epoch 2"
echo "ok: --resume keeps the job's config"

# --- demo --overwrite on a folder with something else in it --------------------------------------
mkdir -p "$work/demo_like"
echo '{}' > "$work/demo_like/demo.json"
echo "my notes" > "$work/demo_like/notes.txt"
expect_failure "demo --overwrite on a folder with a foreign file" \
  "ssn: error: --out .*demo_like holds notes.txt, which .ssn demo. does not write" \
  "$ssn" demo --out "$work/demo_like" --overwrite --cases 30 --epochs 1 --size 16
[ -f "$work/demo_like/notes.txt" ] || fail "demo --overwrite deleted a file it did not write"

# --- leftovers of a dead process ------------------------------------------------------------------
dead=$((4194304 - 7))
kill -0 "$dead" 2>/dev/null && dead=$((dead - 1))
mkdir -p "$work/left" "$work/left/out.ssn-partial-$dead"
echo x > "$work/left/.ssn-tmp$dead-prediction.csv"
echo x > "$work/left/.tmp$dead-not-ours.txt"
stderr=$("$ssn" sample --predictions "$work/predictions" --num-samples 2 --out "$work/left/samples" \
  2>&1 >/dev/null) || fail "sample into a folder with leftovers: $stderr"
grep -q "ssn: removed .*out.ssn-partial-$dead, left by process $dead, which no longer runs" \
  <<<"$stderr" || fail "the staging folder of a dead process was not removed and reported: $stderr"
[ ! -e "$work/left/.ssn-tmp$dead-prediction.csv" ] || fail "a dead process' temporary file stayed"
[ -f "$work/left/.tmp$dead-not-ours.txt" ] || fail "a file that is not ssn's was removed"
echo "ok: leftovers of a dead process removed, other files kept"

# --- settings that would need more memory than the machine has -------------------------------------
python3 - "$config" "$work/huge_rank.json" "$work/huge_step.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
name = next(iter(config["model"]))
config["model"][name]["rank"] = 2000000000
json.dump(config, open(sys.argv[2], "w"))
config["model"][name]["rank"] = 2000000
config["training"]["batch_size"] = 64
json.dump(config, open(sys.argv[3], "w"))
PY
expect_failure "a rank whose head does not fit in memory" \
  "ssn: error: the model's covariance head alone needs about [0-9.]+ GiB .*lower model.rank" \
  "$ssn" train --config-file "$work/huge_rank.json" --job-dir "$work/huge_rank" --data-dir "$work/data"
expect_failure "a step that does not fit in memory" \
  "ssn: error: one training step would need about [0-9.]+ GiB \(batch_size 64" \
  "$ssn" train --config-file "$work/huge_step.json" --job-dir "$work/huge_step" --data-dir "$work/data"
[ ! -e "$work/huge_rank" ] && [ ! -e "$work/huge_step" ] || fail "a refused run left a job folder"

# --- damaged checkpoints --------------------------------------------------------------------------
python3 - "$work/job/checkpoint_last.pt" "$work/flipped.pt" "$work/truncated.pt" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
flipped = bytearray(data)
flipped[len(flipped) // 2] ^= 0x04
open(sys.argv[2], "wb").write(flipped)
open(sys.argv[3], "wb").write(data[: len(data) * 3 // 4])
PY
expect_failure "predict with a bit-flipped checkpoint" \
  "ssn: error: .*flipped.pt: record .* fails its CRC-32 check" \
  "$ssn" predict --config-file "$config" --checkpoint "$work/flipped.pt" --data-dir "$work/data" \
  --out "$work/p_flipped"
expect_failure "predict with a truncated checkpoint" "ssn: error: .*truncated.pt" \
  "$ssn" predict --config-file "$config" --checkpoint "$work/truncated.pt" --data-dir "$work/data" \
  --out "$work/p_truncated"
[ ! -e "$work/p_flipped" ] && [ ! -e "$work/p_truncated" ] || fail "a failed predict left an output"
no_leftovers "all cases" "$work"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all reliability cases passed"
