#!/usr/bin/env python3
"""Held-out LIDC-layout data with an annotator process unlike `ssn synth --kind lidc-like`.

Usage: python3 bench/heldout_lidc.py --out DIR --cases N --seed S [--oracle-samples K]
                                     [--process vessels|soft] [--soft-contrast LO HI]
       (numpy + PIL only)

Writes DIR/{train,val,test}/images/<patient>/<slice>.png (180 x 180, 8-bit grey) and
DIR/{train,val,test}/gt/<patient>/<slice>_l1..4.png (0/255), the layout `ssn train --data-dir`
reads. Patients ("HLD-0000", ...) have 1 to 3 slices; patients go to train/val/test 8:1:1.
The same seed gives the same files. --oracle-samples K also writes DIR/oracle_test, a samples
folder for `ssn evaluate --samples` (<case>_s0..K-1.png: K fresh draws of the annotator process
below for each test image; <case>_l1..4.png: its annotations): its GED is the floor a perfect
model of this data reaches, which is not 0, since a model cannot know which draws the four
annotations happened to be. The draws come from their own generators, so the data set is the
same with or without them.

Two processes, neither of them `ssn synth`'s. --process vessels (the default) is the hard one:

Image process (per slice):
  * background: a low-frequency field plus mid-frequency texture (two scales of Gaussian-filtered
    white noise), 3 to 8 bright curved "vessels" (random smooth walks drawn with a Gaussian
    profile, some passing close to the lesion) and 0 to 6 bright dots (vessel cross-sections);
    none of these is a lesion;
  * lesion: none in 12 % of the slices; otherwise the sum of 1 to 4 anisotropic Gaussians near
    the centre (so it may be irregular or lobulated), with a size from tiny (sigma 2 px) to
    large (sigma 16 px); its "truth" field f is normalised to peak 1, and the image adds
    contrast * f (contrast 0.12 to 1.0, faint lesions being common) with its own texture;
  * Gaussian noise and a light blur.
Annotator process: four styles, permuted over l1..l4 per slice (as LIDC's anonymous readers):
  generous    - threshold 0.30 on f, then dilated by 1-2 px;
  conservative- threshold 0.60, eroded by 1 px, ignores lobes below 40 % of the peak;
  misser      - threshold 0.45, misses lesions with contrast below a random level in 0.2-0.5;
  jittery     - threshold 0.45 on f plus smooth noise of amplitude 0.15 (boundary jitter).
Every style also adds a small smooth jitter (0.05; all jitter fades out away from the lesion), misses very faint lesions (contrast < 0.2)
with probability 0.5 (the generous one 0.2), and marks nothing with probability 0.04.

--process soft is a milder one, made to resemble the held-out set that issue 13 describes (its
annotators' diversity 0.34 and a floor near 0.10; at 64 x 64 this one has 0.34 and 0.125, the
vessels process 0.47 and 0.076):
  * background: a low-frequency field, fine texture and 0 to 3 faint dots; no vessels;
  * lesion: none in 10 % of the slices; otherwise one star-shaped lesion near the centre, its
    radius R (5 to 20 px, log-uniform) modulated by harmonics 2 to 4 of up to 15 %, with a soft
    edge: f = logistic((r(angle) - distance) / s), s = 1.5 to 4 px; contrast 0.35 to 1.2
    (--soft-contrast LO HI draws it in [LO, HI] instead; every other draw, the annotations and
    the oracle's draws are the same as with the default, so sets that differ only in it differ
    only in how clearly their images show the lesion. "1.0 2.0" makes the "clear" set of
    docs/results.md, on which the recipe issue 13 measured scores near the issue's figures).
Annotator process: four independent draws of one reader, who thresholds f at a level drawn
uniformly in 0.15 to 0.85 with a smooth boundary jitter (0.08, near the lesion only), and misses
a small lesion (R < 7 px) with probability 0.15 and any other with probability 0.03.
"""
import argparse
import os

import numpy as np
from PIL import Image

SIDE = 180


def smooth_noise(rng, sigma):
    """White noise filtered by a Gaussian of `sigma` px (in Fourier space), unit deviation."""
    k = np.fft.fftfreq(SIDE)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    out = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((SIDE, SIDE))) * kernel))
    return (out - out.mean()) / (out.std() + 1e-12)


def morph(mask, steps, grow):
    """Binary dilation (grow) or erosion by `steps` 3x3 steps."""
    m = mask.copy()
    for _ in range(steps):
        p = np.pad(m, 1, constant_values=False)
        views = [p[1 + dy:SIDE + 1 + dy, 1 + dx:SIDE + 1 + dx]
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        m = np.logical_or.reduce(views) if grow else np.logical_and.reduce(views)
    return m


def vessels(rng, yy, xx, cy, cx):
    out = np.zeros((SIDE, SIDE))
    for _ in range(rng.integers(3, 9)):
        near = rng.random() < 0.4  # some vessels pass close to the lesion
        y, x = (cy + rng.normal(0, 12), cx + rng.normal(0, 12)) if near else rng.uniform(0, SIDE, 2)
        angle, width = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 3.0)
        strength = rng.uniform(0.3, 0.9)
        for _ in range(rng.integers(20, 60)):
            angle += rng.normal(0, 0.25)
            y, x = y + 3 * np.sin(angle), x + 3 * np.cos(angle)
            box = (slice(max(0, int(y) - 8), int(y) + 9), slice(max(0, int(x) - 8), int(x) + 9))
            d2 = (yy[box] - y) ** 2 + (xx[box] - x) ** 2
            out[box] = np.maximum(out[box], strength * np.exp(-d2 / (2 * width ** 2)))
    for _ in range(rng.integers(0, 7)):
        y, x = rng.uniform(20, SIDE - 20, 2)
        out = np.maximum(out, rng.uniform(0.4, 1.0) *
                         np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * rng.uniform(1, 3) ** 2)))
    return out


def lesion(rng, yy, xx):
    """Truth field f (peak 1) and the per-blob fields; centre of the lesion."""
    cy, cx = SIDE / 2 + rng.uniform(-14, 14, 2)
    base = np.exp(rng.uniform(np.log(2), np.log(16)))  # tiny to large, log-uniform
    blobs = []
    for i in range(rng.integers(1, 5)):
        oy, ox = (0.0, 0.0) if i == 0 else rng.normal(0, 0.9 * base, 2)
        sy, sx = base * rng.uniform(0.5, 1.2, 2) * (1.0 if i == 0 else 0.7)
        t = rng.uniform(0, np.pi)
        dy, dx = yy - cy - oy, xx - cx - ox
        u, v = dy * np.cos(t) + dx * np.sin(t), -dy * np.sin(t) + dx * np.cos(t)
        blobs.append(rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2)))
    f = np.sum(blobs, axis=0)
    peak = f.max()
    return f / peak, [b / peak for b in blobs], cy, cx


def annotate(rng, style, f, blobs, contrast):
    if rng.random() < 0.04 or f is None:
        return np.zeros((SIDE, SIDE), bool)
    if contrast < 0.2 and rng.random() < (0.2 if style == "generous" else 0.5):
        return np.zeros((SIDE, SIDE), bool)
    near = np.minimum(1.0, f / 0.15)  # jitter only near the lesion: no specks elsewhere
    g = f + 0.05 * near * smooth_noise(rng, 4)
    if style == "generous":
        return morph(g > 0.30, int(rng.integers(1, 3)), True)
    if style == "conservative":
        kept = sum(b for b in blobs if b.max() >= 0.4)
        return morph(kept + 0.05 * near * smooth_noise(rng, 4) > 0.60, 1, False)
    if style == "misser":
        return g > 0.45 if contrast >= rng.uniform(0.2, 0.5) else np.zeros((SIDE, SIDE), bool)
    return g + 0.15 * near * smooth_noise(rng, 3) > 0.45  # jittery


def soft_lesion(rng, yy, xx, contrast_range):
    """--process soft: truth field f in [0, 1) with a soft edge, its radius R and contrast."""
    cy, cx = SIDE / 2 + rng.uniform(-14, 14, 2)
    radius = np.exp(rng.uniform(np.log(5), np.log(20)))
    angle = np.arctan2(yy - cy, xx - cx)
    boundary = radius * (1 + sum(rng.uniform(0, 0.15) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
                                 for k in (2, 3, 4)))
    softness = rng.uniform(1.5, 4.0)
    f = 1 / (1 + np.exp(-(boundary - np.hypot(yy - cy, xx - cx)) / softness))
    return f, radius, rng.uniform(*contrast_range), cy, cx


def soft_annotate(rng, f, radius):
    """--process soft: one draw of its reader."""
    if f is None or rng.random() < (0.15 if radius < 7 else 0.03):
        return np.zeros((SIDE, SIDE), bool)
    near = np.minimum(1.0, f / 0.05)  # jitter near the lesion only: no specks elsewhere
    return f + 0.08 * near * smooth_noise(rng, 3) > rng.uniform(0.15, 0.85)


def soft_image(rng, yy, xx, f, contrast):
    image = 0.5 * smooth_noise(rng, 20) + 0.2 * smooth_noise(rng, 2)
    for _ in range(rng.integers(0, 4)):
        y, x = rng.uniform(20, SIDE - 20, 2)
        image += rng.uniform(0.3, 0.8) * np.exp(
            -((yy - y) ** 2 + (xx - x) ** 2) / (2 * rng.uniform(1, 3) ** 2))
    if f is not None:
        image += 2.0 * contrast * f * (1 + 0.15 * smooth_noise(rng, 2))
    return image + 0.10 * rng.standard_normal((SIDE, SIDE))


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle-samples", type=int, default=0)
    parser.add_argument("--process", choices=["vessels", "soft"], default="vessels")
    parser.add_argument("--soft-contrast", type=float, nargs=2, default=[0.35, 1.2],
                        metavar=("LO", "HI"),
                        help="--process soft: the lesion's contrast, uniform in [LO, HI]")
    args = parser.parse_args()
    if args.cases < 3:
        parser.error("--cases must be >= 3")
    if not 0 <= args.soft_contrast[0] <= args.soft_contrast[1]:
        parser.error("--soft-contrast needs 0 <= LO <= HI, got %g %g" % tuple(args.soft_contrast))
    rng = np.random.default_rng(args.seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(float)
    styles = ["generous", "conservative", "misser", "jittery"]
    counts, case, patient = {"train": 0, "val": 0, "test": 0}, 0, 0
    while case < args.cases:
        # Patients 8, 9 of every ten go to val and test; under 30 cases, one slice per patient
        # and patients in turn to train / val / test, so that every split has one.
        small = args.cases < 30
        split = (("train", "val", "test")[patient % 3] if small
                 else {8: "val", 9: "test"}.get(patient % 10, "train"))
        name = "HLD-%04d" % patient
        for z in range(1 if small else min(int(rng.integers(1, 4)), args.cases - case)):
            if args.process == "soft":
                f, radius, contrast = None, 0.0, 0.0
                if rng.random() >= 0.10:
                    f, radius, contrast, _, _ = soft_lesion(rng, yy, xx, args.soft_contrast)
                image = soft_image(rng, yy, xx, f, contrast)
                draw = lambda g, k: soft_annotate(g, f, radius)
            else:
                if rng.random() < 0.12:
                    f, blobs, contrast = None, [], 0.0
                    cy, cx = SIDE / 2 + rng.uniform(-14, 14, 2)
                else:
                    f, blobs, cy, cx = lesion(rng, yy, xx)
                    contrast = rng.uniform(0.12, 1.0) ** 1.3 + 0.05
                image = (0.5 * smooth_noise(rng, 20) + 0.25 * smooth_noise(rng, 2.5)
                         + 1.2 * vessels(rng, yy, xx, cy, cx))
                if f is not None:
                    image += 2.5 * contrast * f * (1 + 0.2 * smooth_noise(rng, 2))
                image += 0.12 * rng.standard_normal((SIDE, SIDE))
                draw = lambda g, k: annotate(g, styles[k], f, blobs, contrast)
            image = np.real(np.fft.ifft2(np.fft.fft2(image) * np.exp(
                -2 * (np.pi * 0.7) ** 2 * (np.fft.fftfreq(SIDE)[:, None] ** 2
                                           + np.fft.fftfreq(SIDE)[None, :] ** 2))))
            lo, hi = np.percentile(image, [0.5, 99.9])
            grey = np.clip((image - lo) / (hi - lo), 0, 1) * 255
            write_png(os.path.join(args.out, split, "images", name, "z-%d.png" % z), grey.round())
            masks = [draw(rng, k) for k in rng.permutation(len(styles))]
            for a, mask in enumerate(masks):
                write_png(os.path.join(args.out, split, "gt", name, "z-%d_l%d.png" % (z, a + 1)),
                          mask * 255)
            if split == "test" and args.oracle_samples > 0:
                # Fresh draws of the process: a style uniformly at random, then its own noise.
                oracle = np.random.default_rng([args.seed, case, 1])
                prefix = os.path.join(args.out, "oracle_test", "%s_z-%d" % (name, z))
                for k in range(args.oracle_samples):
                    write_png("%s_s%d.png" % (prefix, k),
                              draw(oracle, int(oracle.integers(0, 4))) * 255)
                for a, mask in enumerate(masks):
                    write_png("%s_l%d.png" % (prefix, a + 1), mask * 255)
            counts[split] += 1
            case += 1
        patient += 1
    print("wrote %s: %d train, %d val, %d test images, 4 annotator masks each"
          % (args.out, counts["train"], counts["val"], counts["test"]))


if __name__ == "__main__":
    main()
