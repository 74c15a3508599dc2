"""Joins Google Benchmark JSON (ours) and pytorch_micro.py JSON into the markdown table of
docs/performance.md. Usage: python3 compare_micro.py OURS.json PYTORCH.json"""
import json
import sys

ours = json.load(open(sys.argv[1]))
torch_results = json.load(open(sys.argv[2]))
names = {
    "BM_Rsample": ("rsample, M = 20", "rsample"),
    "BM_LogProb": ("log_prob (with construction)", "log_prob"),
    "BM_LossForwardBackward": ("SSN loss forward + backward, M = 20", "loss_forward_backward"),
}
print(f"device: {torch_results.get('device', 'cpu')}, threads: {torch_results['threads']}, "
      f"PyTorch {torch_results['torch']}")
print()
print("| operation | ssn (ms) | PyTorch (ms) | speed-up |")
print("|---|---:|---:|---:|")
extra = []
for bench in ours["benchmarks"]:
    key = bench["name"].split("/")[0]
    if key not in names:
        continue
    label, torch_key = names[key]
    ours_ms = bench["real_time"] if bench["time_unit"] == "ms" else bench["real_time"] / 1e6
    torch_ms = torch_results[torch_key] * 1e3
    print(f"| {label} | {ours_ms:.1f} | {torch_ms:.1f} | {torch_ms / ours_ms:.2f}x |")
    if "peak_MiB" in bench:
        extra.append(f"peak memory of one loss step (ssn): {bench['peak_MiB']:.0f} MiB = "
                     f"{bench['peak_over_logits']:.2f} x the M x B x N float32 logits")
for line in extra:
    print()
    print(line)
