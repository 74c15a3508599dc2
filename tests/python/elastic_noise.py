"""The reference's RandomElasticDeformationCoarsePerlinNoise field (ssn/nifti/augmention.py of the
SSN code, Perlin noise after pvigier's perlin-numpy with numpy.random.RandomState(843) gradients),
stated independently: alpha * noise on the window [0, Z) x [0, Y) x [0, X) of the padded noise
volume, rounded as the reference stores it. Prints the statistics `ssn benchmark elastic` reports.

Usage: elastic_noise.py NOISE_SHAPE(a,b,c) PERIOD(a,b,c) ALPHA Z,Y,X
"""
import json
import sys

import numpy as np


def main():
    noise_shape = [int(v) for v in sys.argv[1].split(",")]
    res = [int(v) for v in sys.argv[2].split(",")]
    alpha = float(sys.argv[3])
    window = [int(v) for v in sys.argv[4].split(",")]
    # Padded to a multiple of the lattice, one more cell where the period is 1.
    padded = [(s // c + (s % c > 0) + (c == 1)) * c for s, c in zip(noise_shape, res)]
    per_cell = [p // c for p, c in zip(padded, res)]
    rng = np.random.RandomState(843)
    theta = 2 * np.pi * rng.rand(*[c + 1 for c in res])
    phi = 2 * np.pi * rng.rand(*[c + 1 for c in res])
    grad = np.stack([np.sin(phi) * np.cos(theta), np.sin(phi) * np.sin(theta), np.cos(phi)], -1)
    axes = []
    for n, d in zip(window, per_cell):
        v = np.arange(n)
        axes.append((v // d, (v % d) / d))
    (c0, t0), (c1, t1) = axes[0], axes[1]
    c2, t2 = axes[2]
    C0, C1, C2 = np.meshgrid(c0, c1, c2, indexing="ij")
    T0, T1, T2 = np.meshgrid(t0, t1, t2, indexing="ij")

    def dot(d0, d1, d2):
        g = grad[C0 + d0, C1 + d1, C2 + d2]
        return g[..., 0] * (T0 - d0) + g[..., 1] * (T1 - d1) + g[..., 2] * (T2 - d2)

    def smooth(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    F0, F1, F2 = smooth(T0), smooth(T1), smooth(T2)
    x00 = dot(0, 0, 0) * (1 - F0) + dot(1, 0, 0) * F0
    x10 = dot(0, 1, 0) * (1 - F0) + dot(1, 1, 0) * F0
    x01 = dot(0, 0, 1) * (1 - F0) + dot(1, 0, 1) * F0
    x11 = dot(0, 1, 1) * (1 - F0) + dot(1, 1, 1) * F0
    noise = (x00 * (1 - F1) + x10 * F1) * (1 - F2) + (x01 * (1 - F1) + x11 * F1) * F2
    field = np.round(noise * alpha)
    print(json.dumps({"mean": field.mean(), "std": field.std(), "max_abs": np.abs(field).max(),
                      "sum_of_squares": (field ** 2).sum(),
                      "noise_std": float(noise.std())}))


if __name__ == "__main__":
    main()
