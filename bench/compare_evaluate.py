"""Times bench/phiseg_baseline.py on the maps `ssn benchmark evaluate --data-out DIR` wrote, checks
that every metric agrees with ssn's to 1e-12, and prints the table of docs/performance.md.
Usage: python3 compare_evaluate.py DIR   (DIR holds ours.json and <workload>.u8)"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phiseg_baseline as phiseg  # noqa: E402

data = sys.argv[1]
ours = json.load(open(os.path.join(data, "ours.json")))
print(f"threads (ssn): {ours['threads']}; NumPy baseline single-threaded loops")
print()
print("| workload | ssn (s) | NumPy PHiSeg loops (s) | speed-up | max metric difference |")
print("|---|---:|---:|---:|---:|")
worst = 0.0
for w in ours["workloads"]:
    n, m, k = w["num_samples"], w["num_annotations"], w["num_classes"]
    shape = tuple(w["shape"])
    maps = np.fromfile(os.path.join(data, w["name"] + ".u8"), dtype=np.uint8).reshape((n + m,) + shape)
    samples, annotations = maps[:n], maps[n:]
    start = time.perf_counter()
    result = phiseg.distribution_metrics(samples, annotations, k)
    if "ncc" in w["metrics"]:
        result["ncc"] = phiseg.variance_ncc_dist(phiseg.one_hot(samples, k),
                                                 phiseg.one_hot(annotations, k))
    seconds = time.perf_counter() - start
    diff = max(abs(result[name] - value) for name, value in w["metrics"].items())
    worst = max(worst, diff)
    label = f"{w['name']}: {n} samples x {m} annotations, {'x'.join(map(str, shape))}, K = {k}"
    print(f"| {label} | {w['seconds']:.4f} | {seconds:.2f} | {seconds / w['seconds']:.0f}x | {diff:.1e} |")
if worst > 1e-12:
    sys.exit(f"metrics differ by {worst}")
