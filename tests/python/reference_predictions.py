"""Writes a predictions folder as the reference's inference.py does, and the same predictions in
ssn's layout, from random maps.

usage: reference_predictions.py OUT_DIR SEED
  OUT_DIR/run/job/predictions/: prediction.csv (the reference's columns: id, the test CSV's
      flair..t2, seg, sampling_mask, then prob_maps, prediction, logit_mean, cov_diag, cov_factor)
      and <id>_<name>.nii.gz, the maps as SimpleITK writes them: 3-D vector NIfTI images (C
      components per voxel, intent VECTOR); map paths relative to OUT_DIR/run, where inference.py
      ran, the test CSV's paths absolute.
  OUT_DIR/ssn/: the same maps in ssn's layout (4-D float32 NIfTI [C, D, H, W], the ROI applied as
      the reference's evaluation applies it: class-0 logit 100 and no factor outside it).
"""
import gzip
import os
import struct
import sys

import numpy as np

out, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
C, R, D, H, W = 4, 3, 6, 7, 8


def write_nifti(path, array, vector):
    """array: [C, D, H, W] (vector: C components per voxel) or [D, H, W] / [C, D, H, W] scalar."""
    array = np.ascontiguousarray(array)
    codes = {np.dtype(np.float32): (16, 32), np.dtype(np.float64): (64, 64),
             np.dtype(np.uint8): (2, 8)}
    datatype, bitpix = codes[array.dtype]
    spatial = array.shape[-3:][::-1]  # x, y, z
    if vector:
        dim = [5, *spatial, 1, array.shape[0], 1, 1]
        intent = 1007  # NIFTI_INTENT_VECTOR
    elif array.ndim == 4:
        dim = [4, *spatial, array.shape[0], 1, 1, 1]
        intent = 0
    else:
        dim = [3, *spatial, 1, 1, 1, 1]
        intent = 0
    spacing = (1.0, 1.2, 1.5, 2.0)
    header = struct.pack(
        '<i10s18sihbb8h3fhhhh8ffffhbbffffii80s24shh6f4f4f4f16s4s',
        348, b'', b'', 0, 0, ord('r'), 0, *dim, 0, 0, 0, intent, datatype, bitpix, 0,
        1.0, *spacing, 1, 1, 1, 352.0, 1.0, 0.0, 0, 0, 10, 0, 0, 0, 0, 0, 0,
        b'reference-style test map', b'', 0, 1, 0, 0, 0, 0, 0, 0,
        spacing[0], 0, 0, -10.0, 0, spacing[1], 0, 20.0, 0, 0, spacing[2], 5.0, b'', b'n+1\0')
    assert len(header) == 348
    with gzip.open(path, 'wb') as f:
        f.write(header + b'\0' * 4 + array.tobytes())


run = os.path.join(out, 'run')
pred = os.path.join(run, 'job', 'predictions')
data = os.path.join(out, 'data')
ssn = os.path.join(out, 'ssn')
for d in (pred, data, ssn):
    os.makedirs(d, exist_ok=True)
ref_rows, ssn_rows = [], []
channels = ['flair', 't1', 't1ce', 't2']
for case in ('case_a', 'case_b', 'case_c'):
    mean = rng.normal(0, 2, (C, D, H, W)).astype(np.float32)
    cov_diag = rng.uniform(0.05, 1.0, (C, D, H, W)).astype(np.float32)
    cov_factor = rng.normal(0, 1, (C * R, D, H, W)).astype(np.float32)  # rank-major
    mask = (rng.random((D, H, W)) > 0.25).astype(np.uint8)
    seg = rng.integers(0, C, (D, H, W)).astype(np.uint8) * mask
    row = {'id': case}
    for ch in channels:
        row[ch] = os.path.join(data, '%s_%s.nii.gz' % (case, ch))
        write_nifti(row[ch], rng.normal(0, 1, (D, H, W)).astype(np.float32), False)
    row['seg'] = os.path.join(data, case + '_seg.nii.gz')
    write_nifti(row['seg'], seg, False)
    row['sampling_mask'] = os.path.join(data, case + '_sampling_mask.nii.gz')
    write_nifti(row['sampling_mask'], mask, False)
    prob = np.exp(mean) / np.exp(mean).sum(0)
    maps = {'prob_maps': (prob.astype(np.float64), True),
            'prediction': (np.argmax(prob, 0).astype(np.float64), False),
            'logit_mean': (mean, True), 'cov_diag': (cov_diag, True), 'cov_factor': (cov_factor, True)}
    for name, (array, vector) in maps.items():
        row[name] = os.path.join('job', 'predictions', '%s_%s.nii.gz' % (case, name))
        write_nifti(os.path.join(run, row[name]), array, vector)
    ref_rows.append(row)
    # ssn's layout, the ROI applied.
    ssn_mean = mean.copy()
    ssn_mean[0][mask == 0] = 100.0
    names = {'logit_mean': ssn_mean, 'cov_diag': cov_diag, 'cov_factor': cov_factor * mask}
    srow = {'id': case, 'annotations': row['seg']}
    for name, array in names.items():
        srow[name] = '%s_%s.nii.gz' % (case, name)
        write_nifti(os.path.join(ssn, srow[name]), array.astype(np.float32), False)
    ssn_rows.append(srow)


def write_csv(path, rows):
    keys = list(rows[0])
    with open(path, 'w') as f:
        f.write(','.join(keys) + '\n')
        for r in rows:
            f.write(','.join(str(r[k]) for k in keys) + '\n')


write_csv(os.path.join(pred, 'prediction.csv'), ref_rows)
write_csv(os.path.join(ssn, 'prediction.csv'), ssn_rows)
print('wrote 3 cases in the reference\'s layout (%s) and in ssn\'s (%s)' % (pred, ssn))
