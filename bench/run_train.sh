#!/usr/bin/env bash
# run_train.sh [BUILD_DIR]: `ssn benchmark train` for the paper's two set-ups next to their
# PyTorch baselines (bench/pytorch_train.py), alternating ssn and PyTorch ROUNDS times (default 2)
# in the same run, same threads and device; prints seconds per step, peak tensor memory and the
# ratios against PyTorch fp32 (the median over rounds). Precisions: fp32 always, bf16 where the
# CPU has native bfloat16 (or on CUDA: fp16 and bf16).
#   SSN_BENCH_THREADS (default: nproc), SSN_BENCH_DEVICE (cpu|cuda), SSN_BENCH_ROUNDS,
#   SSN_BENCH_SETUPS ("lidc brats"), SSN_BENCH_BRATS_BATCH (default 2; the reference
#   trains with 10, whose 5 steps did not finish within 8 minutes on 2 cores),
#   SSN_BENCH_STEPS and SSN_BENCH_WARMUP (default: 4 steps for LIDC, 3 for BraTS, after 1),
#   SSN_BENCH_PHASES=1: then one more run of each with --phases (fp32, and fp16 on CUDA), and a
#   table of the forward pass, loss, backward pass and optimiser step, each synchronised.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
threads=${SSN_BENCH_THREADS:-$(nproc)}
device=${SSN_BENCH_DEVICE:-cpu}
rounds=${SSN_BENCH_ROUNDS:-2}
warmup=${SSN_BENCH_WARMUP:-1}
setups=${SSN_BENCH_SETUPS:-lidc brats}
brats_batch=${SSN_BENCH_BRATS_BATCH:-2}
python=${SSN_PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

precisions="fp32"
if [ "$device" = cpu ]; then
  grep -q avx512_bf16 /proc/cpuinfo && precisions="fp32 bf16"
else
  precisions="fp32 fp16 bf16"
fi

for setup in $setups; do
  if [ "$setup" = lidc ]; then
    config=$root/configs/lidc_unet_rank10.json
    batch_flag=()
    steps=${SSN_BENCH_STEPS:-4}
  else
    # The reference's BraTS config with the batch size of the run.
    config=$out/brats.json
    "$python" -c "import json,sys; c=json.load(open(sys.argv[1])); c['training']['batch_size']=int(sys.argv[3]); json.dump(c, open(sys.argv[2], 'w'))" \
      "$root/tests/data/reference/rank_10_mc_20_patch_110.json" "$config" "$brats_batch"
    batch_flag=(--batch-size "$brats_batch")
    steps=${SSN_BENCH_STEPS:-3}
  fi
  for round in $(seq "$rounds"); do
    for precision in $precisions; do
      # A run that fails is reported in the table and the others go on.
      "$build/ssn" --threads "$threads" benchmark train --config-file "$config" --device "$device" \
        --precision "$precision" --steps "$steps" --warmup "$warmup" --json \
        > "$out/$setup.ssn.$precision.$round.json" ||
        { echo "ssn $setup $precision failed" >&2; echo '{"failed": true}' > "$out/$setup.ssn.$precision.$round.json"; }
      "$python" "$here/pytorch_train.py" "$setup" --threads "$threads" --device "$device" \
        --precision "$precision" --steps "$steps" --warmup "$warmup" "${batch_flag[@]}" \
        > "$out/$setup.pytorch.$precision.$round.json" ||
        { echo "pytorch $setup $precision failed" >&2; echo '{"failed": true}' > "$out/$setup.pytorch.$precision.$round.json"; }
    done
  done
  if [ "${SSN_BENCH_PHASES:-0}" = 1 ]; then
    for precision in fp32 $([ "$device" = cpu ] || echo fp16); do
      "$build/ssn" --threads "$threads" benchmark train --config-file "$config" --device "$device" \
        --precision "$precision" --steps "$steps" --warmup "$warmup" --phases --json \
        > "$out/$setup.ssn.$precision.phases.json" || echo '{"failed": true}' > "$out/$setup.ssn.$precision.phases.json"
      "$python" "$here/pytorch_train.py" "$setup" --threads "$threads" --device "$device" \
        --precision "$precision" --steps "$steps" --warmup "$warmup" "${batch_flag[@]}" --phases \
        > "$out/$setup.pytorch.$precision.phases.json" || echo '{"failed": true}' > "$out/$setup.pytorch.$precision.phases.json"
    done
  fi
done

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $threads threads, $device"
[ "$device" = cpu ] || echo "gpu: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
"$python" - "$out" "$setups" "$precisions" "$rounds" <<'PY'
import json, statistics, sys
out, setups, precisions, rounds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
def load(setup, who, precision):
    runs = [json.load(open(f"{out}/{setup}.{who}.{precision}.{r}.json")) for r in range(1, rounds + 1)]
    if any(r.get("failed") for r in runs):
        return None, None
    seconds = statistics.median(r["seconds_per_step"] for r in runs)
    memory = runs[0]["peak_tensor_bytes"]
    return seconds, memory
def ratio(a, b, unit="x", digits=2):
    return f"{a / b:.{digits}f}{unit}" if a is not None and b else "n/a"
def mib(m):
    return f"{m / 2**20:.0f}" if m is not None else "n/a"
def sec(s):
    return f"{s:.3f}" if s is not None else "failed"
print("| set-up | precision | ssn s/step | PyTorch s/step | ssn speed vs PyTorch fp32 | vs PyTorch same precision | ssn peak MiB | PyTorch peak MiB | memory vs PyTorch fp32 |")
print("|---|---|---|---|---|---|---|---|---|")
for setup in setups:
    base_s, base_m = load(setup, "pytorch", "fp32")
    for p in precisions:
        s, m = load(setup, "ssn", p)
        ps, pm = load(setup, "pytorch", p)
        print(f"| {setup} | {p} | {sec(s)} | {sec(ps)} | {ratio(base_s, s)} | {ratio(ps, s)} | {mib(m)} | {mib(pm)} | {ratio(m, base_m)} |")
import glob, os
phase_files = sorted(glob.glob(f"{out}/*.phases.json"))
if phase_files:
    names = ["forward", "loss", "backward", "optimizer"]
    print()
    print("Phases (--phases: median seconds, the device synchronised after each):")
    print("| set-up | precision | | " + " | ".join(names) + " | sum |")
    print("|---|---|---|" + "---:|" * (len(names) + 1))
    for setup in setups:
        for p in precisions:
            rows = {}
            for who in ("ssn", "pytorch"):
                f = f"{out}/{setup}.{who}.{p}.phases.json"
                if os.path.exists(f):
                    rows[who] = json.load(open(f))
            for who, r in rows.items():
                if r.get("failed"):
                    print(f"| {setup} | {p} | {who} | failed |")
                    continue
                ph = r["phase_seconds"]
                print(f"| {setup} | {p} | {who} | " + " | ".join(f"{ph[n]:.4f}" for n in names)
                      + f" | {sum(ph.values()):.4f} |")
            if len(rows) == 2 and not any(r.get("failed") for r in rows.values()):
                a, b = rows["ssn"]["phase_seconds"], rows["pytorch"]["phase_seconds"]
                print(f"| {setup} | {p} | ssn ÷ PyTorch | " + " | ".join(ratio(a[n], b[n]) for n in names)
                      + f" | {ratio(sum(a.values()), sum(b.values()))} |")
PY
