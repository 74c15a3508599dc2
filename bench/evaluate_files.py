"""Helper of run_evaluate_files.sh.
  evaluate_files.py write DIR               writes 20 cases x (100 samples + 4 annotations) PNGs
  evaluate_files.py compare DIR CSV INSIDE WHOLE
        times PHiSeg's loops on DIR (PNG reading included) in-process and as a whole process,
        compares with ssn's metrics.csv (ssn took INSIDE s in-process, WHOLE s as a process)
"""
import csv
import glob
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phiseg_baseline as phiseg  # noqa: E402

CASES, SAMPLES, ANNOTATIONS, SIDE = 20, 100, 4, 128


def blob(rng):
    y, x = np.mgrid[-1:1:SIDE * 1j, -1:1:SIDE * 1j]
    cy, cx = 0.1 * rng.standard_normal(2)
    radius = 0.4 * (1 + 0.2 * rng.standard_normal())
    wobble = 1 + 0.15 * np.sin(3 * np.arctan2(y - cy, x - cx) + rng.uniform(0, 6.3))
    return ((y - cy) ** 2 + (x - cx) ** 2 < (radius * wobble) ** 2).astype(np.uint8) * 255


def write(folder):
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for case in range(CASES):
        for i in range(SAMPLES):
            Image.fromarray(blob(rng)).save(f"{folder}/case{case:02d}_s{i}.png")
        for j in range(1, ANNOTATIONS + 1):
            Image.fromarray(blob(rng)).save(f"{folder}/case{case:02d}_l{j}.png")


def read(path):
    return (np.asarray(Image.open(path)) > 0).astype(np.uint8)


def score(folder):
    """PHiSeg's loops on every case of the folder, reading included -> {case: metrics}."""
    results = {}
    for case in sorted({os.path.basename(p).split("_")[0] for p in glob.glob(f"{folder}/*.png")}):
        samples = np.stack([read(f"{folder}/{case}_s{i}.png") for i in range(SAMPLES)])
        annotations = np.stack([read(f"{folder}/{case}_l{j}.png")
                                for j in range(1, ANNOTATIONS + 1)])
        result = phiseg.distribution_metrics(samples, annotations, 2)
        result["ncc"] = phiseg.variance_ncc_dist(phiseg.one_hot(samples, 2),
                                                 phiseg.one_hot(annotations, 2))
        results[case] = result
    return results


def compare(folder, csv_path, ssn_inside, ssn_whole):
    ours = {row["id"]: row for row in csv.DictReader(open(csv_path))}
    start = time.perf_counter()
    results = score(folder)
    inside = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, os.path.abspath(__file__), "score", folder], check=True)
    whole = time.perf_counter() - start
    worst = max(abs(value - float(ours[case][name]))
                for case, result in results.items() for name, value in result.items())
    print("| 20 cases x (100 + 4) PNG files, 128x128 | ssn evaluate --samples (s) | "
          "NumPy PHiSeg loops (s) | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| in-process: reading + scoring | {ssn_inside:.3f} | {inside:.2f} | "
          f"{inside / ssn_inside:.0f}x |")
    print(f"| whole process (ssn: LibTorch load; Python: interpreter + imports) | {ssn_whole:.2f} | "
          f"{whole:.2f} | {whole / ssn_whole:.0f}x |")
    print(f"\nlargest difference between the two implementations' metrics: {worst:.1e}")
    if worst > 1e-12:
        sys.exit(f"metrics differ by {worst}")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    elif sys.argv[1] == "score":
        score(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
