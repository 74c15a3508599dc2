#!/usr/bin/env bash
# distributed.sh SSN CONFIG WORK: data-parallel training on 2 processes over Gloo on 127.0.0.1.
#  1. `--nproc-per-node 2` trains to the same train_log.csv losses as one process (a config
#     without batch norm or dropout; float32 reductions in another order: 1e-4 relative);
#     and a run of 2 processes resumed on 1 continues it as 1 process would; the same with
#     training.ema_decay (the average's validation included);
#  2. rank 0 alone writes the job folder; `ssn predict --nproc-per-node 2` writes the same
#     predictions folder, byte for byte, as one process;
#  3. a launch with a missing variable is an error naming it;
#  4. a worker killed with SIGKILL stops the run within 60 s with an error naming its rank, and
#     leaves no half-written file.
set -eu
ssn=$1
config=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
"$ssn" synth --kind lidc-like --out "$work/data" --cases 120 --seed 5 > /dev/null

"$ssn" --threads 1 train --config-file "$config" --job-dir "$work/one" --data-dir "$work/data" \
  --random-seeds 3 > "$work/one.out"
"$ssn" train --nproc-per-node 2 --config-file "$config" --job-dir "$work/two" \
  --data-dir "$work/data" --random-seeds 3 > "$work/two.out"
python3 - "$work/one/train_log.csv" "$work/two/train_log.csv" <<'PY'
import csv, math, sys
one = list(csv.DictReader(open(sys.argv[1])))
two = list(csv.DictReader(open(sys.argv[2])))
assert len(one) == len(two) == 3, (len(one), len(two))
worst = 0.0
for a, b in zip(one, two):
    for key in ("train_loss", "val_loss", "val_ged"):
        x, y = float(a[key]), float(b[key])
        if math.isnan(x) and math.isnan(y):
            continue
        worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
print(f"largest relative difference of 1 and 2 processes: {worst:.2e}")
assert worst < 1e-4, worst
PY
# --resume with another number of processes: 2 epochs on 2 processes, the third on 1.
"$ssn" train --nproc-per-node 2 --config-file "$config" --job-dir "$work/switch" \
  --data-dir "$work/data" --random-seeds 3 --num-epochs 2 > /dev/null
"$ssn" --threads 1 train --job-dir "$work/switch" --data-dir "$work/data" --random-seeds 3 \
  --resume > /dev/null
python3 - "$work/one/train_log.csv" "$work/switch/train_log.csv" <<'PY'
import csv, sys
one = list(csv.DictReader(open(sys.argv[1])))
switch = list(csv.DictReader(open(sys.argv[2])))
assert len(switch) == 3, len(switch)
worst = max(abs(float(a["train_loss"]) - float(b["train_loss"])) / abs(float(a["train_loss"]))
            for a, b in zip(one, switch))
print(f"2 processes resumed on 1 against 1 throughout: {worst:.2e}")
assert worst < 1e-4, worst
PY
# With an average of the weights (training.ema_decay; the validation scores the average): 2
# processes give 1 process's log, and so does a run of 2 processes resumed on 1.
python3 - "$config" "$work/ema.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["training"]["ema_decay"] = 0.9
json.dump(config, open(sys.argv[2], "w"))
PY
"$ssn" --threads 1 train --config-file "$work/ema.json" --job-dir "$work/ema_one" \
  --data-dir "$work/data" --random-seeds 3 > /dev/null
"$ssn" train --nproc-per-node 2 --config-file "$work/ema.json" --job-dir "$work/ema_two" \
  --data-dir "$work/data" --random-seeds 3 > /dev/null
"$ssn" train --nproc-per-node 2 --config-file "$work/ema.json" --job-dir "$work/ema_switch" \
  --data-dir "$work/data" --random-seeds 3 --num-epochs 2 > /dev/null
"$ssn" --threads 1 train --job-dir "$work/ema_switch" --data-dir "$work/data" --random-seeds 3 \
  --resume > /dev/null
python3 - "$work/ema_one/train_log.csv" "$work/ema_two/train_log.csv" \
  "$work/ema_switch/train_log.csv" "$work/one/train_log.csv" <<'PY'
import csv, math, sys
one, two, switch, plain = (list(csv.DictReader(open(p))) for p in sys.argv[1:])
assert len(one) == len(two) == len(switch) == 3
worst = 0.0
for a, b, c in zip(one, two, switch):
    for key in ("train_loss", "val_loss", "val_ged"):
        x = float(a[key])
        for y in (float(b[key]), float(c[key])):
            if math.isnan(x) and math.isnan(y):
                continue
            worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
print(f"averaged weights, 2 processes and 2 resumed on 1 against 1: {worst:.2e}")
assert worst < 1e-4, worst
# The same training as without the average; another model validated.
assert all(a["train_loss"] == p["train_loss"] for a, p in zip(one, plain))
assert one[-1]["val_loss"] != plain[-1]["val_loss"]
PY

grep -q "job folder: $work/two" "$work/two.out" || { echo "rank 0 did not report"; exit 1; }
[ "$(grep -c "job folder:" "$work/two.out")" = 1 ] || { echo "more than one rank printed"; exit 1; }
ls -A "$work/two" | grep -v -x -E 'config.json|train_log.csv|checkpoint_last.pt|checkpoint_best.pt|\.ssn\.lock' \
  && { echo "unexpected files in the job folder"; exit 1; }

# Sharded prediction: the same folder, byte for byte, as one process; no shard folder left.
"$ssn" --threads 1 predict --config-file "$work/two/config.json" \
  --checkpoint "$work/two/checkpoint_best.pt" --data-dir "$work/data" --out "$work/pred_one" > /dev/null
"$ssn" predict --nproc-per-node 2 --config-file "$work/two/config.json" \
  --checkpoint "$work/two/checkpoint_best.pt" --data-dir "$work/data" --out "$work/pred_two" \
  > "$work/pred_two.out"
diff -r "$work/pred_one" "$work/pred_two"
[ "$(grep -c "wrote 12 predictions" "$work/pred_two.out")" = 1 ] || { cat "$work/pred_two.out"; exit 1; }
if ls -A "$work" | grep -q "ssn-shard"; then echo "a shard folder was left"; exit 1; fi
echo "sharded predict: the same folder as one process"

# Under torchrun (its agent hosts the store): the same log as the built-in launcher.
if command -v torchrun > /dev/null && /usr/bin/python3 -c 'import torch.distributed.run' 2> /dev/null; then
  here=$(cd "$(dirname "$0")" && pwd)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  /usr/bin/python3 "$here/../python/torchrun.py" --no_python --nproc_per_node 2 --master_port "$port" \
    "$ssn" --threads 1 train --config-file "$config" --job-dir "$work/torchrun" \
    --data-dir "$work/data" --random-seeds 3 > /dev/null 2> "$work/torchrun.err" \
    || { cat "$work/torchrun.err"; exit 1; }
  cmp <(cut -d, -f1-6 "$work/torchrun/train_log.csv") <(cut -d, -f1-6 "$work/two/train_log.csv")
  echo "torchrun --no_python: the same train_log.csv"
fi

# A port in use: rank 0's rendezvous says so and the launcher stops the other worker.
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(120)' > "$work/port" &
holder=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
if "$ssn" train --nproc-per-node 2 --master-port "$(cat "$work/port")" --config-file "$config" \
    --job-dir "$work/port_job" --data-dir "$work/data" 2> "$work/port.err" > /dev/null; then
  kill "$holder"; echo "a launch on a port in use succeeded"; exit 1
fi
kill "$holder"
grep -q "is the port in use?" "$work/port.err" || { cat "$work/port.err"; exit 1; }

# A launch variable missing: an error that names it.
if WORLD_SIZE=2 RANK=0 "$ssn" train --config-file "$config" --job-dir "$work/bad" \
    --data-dir "$work/data" 2> "$work/bad.err"; then
  echo "a launch without MASTER_ADDR succeeded"; exit 1
fi
grep -q "MASTER_ADDR is not set" "$work/bad.err" || { cat "$work/bad.err"; exit 1; }
[ ! -e "$work/bad" ] || { echo "the failed launch left a job folder"; exit 1; }

# A worker killed mid-run.
"$ssn" train --nproc-per-node 2 --config-file "$config" --job-dir "$work/killed" \
  --data-dir "$work/data" --num-epochs 200 > /dev/null 2> "$work/killed.err" &
launcher=$!
for _ in $(seq 1 1200); do
  [ -f "$work/killed/train_log.csv" ] && break
  sleep 0.1
done
[ -f "$work/killed/train_log.csv" ] || { echo "no epoch finished in 2 minutes"; kill "$launcher"; exit 1; }
rank1=""
for pid in $(pgrep -P "$launcher"); do
  if tr '\0' '\n' < "/proc/$pid/environ" | grep -qx "RANK=1"; then rank1=$pid; fi
done
[ -n "$rank1" ] || { echo "rank 1 not found"; kill "$launcher"; exit 1; }
start=$(date +%s)
kill -9 "$rank1"
status=0
wait "$launcher" || status=$?
elapsed=$(( $(date +%s) - start ))
echo "launcher exit status $status after $elapsed s"
cat "$work/killed.err" | tail -n 3
[ "$status" = 1 ] || { echo "expected exit status 1"; exit 1; }
[ "$elapsed" -lt 60 ] || { echo "the run took $elapsed s to stop"; exit 1; }
grep -q "rank 1 of 2 (pid $rank1) was killed by signal 9" "$work/killed.err" || exit 1
if ls -A "$work/killed" | grep -q "ssn-tmp"; then echo "a half-written file was left"; exit 1; fi
echo "distributed: ok"
