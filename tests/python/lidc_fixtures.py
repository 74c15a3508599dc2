"""Writes LIDC files in the two formats researchers hold, from random data ssn has never seen.

usage: lidc_fixtures.py OUT_DIR SEED
  OUT_DIR/data_lidc_p2.pickle, _p4.pickle, _p5.pickle: the Probabilistic U-Net port's pickle
      (dict slice name -> {'image', 'masks', 'series_uid', 'pixel_spacing'}) in protocols 2, 4, 5
  OUT_DIR/data_lidc.hdf5: PHiSeg's file (train/val/test: images = image - 0.5, labels, uids)
  OUT_DIR/truth.npz: the source arrays, for the checks of check_lidc_conversion.py
"""
import os
import pickle
import sys

import h5py
import numpy as np

out, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
os.makedirs(out, exist_ok=True)


def smooth_image(n):
    # A CT-like crop: smooth structure plus noise, values in [0, 1].
    y, x = np.mgrid[0:n, 0:n] / n
    f = sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * (rng.uniform(0.5, 4) * x + rng.uniform(0.5, 4) * y)
                                           + rng.uniform(0, 6)) for _ in range(4))
    f = f + 0.2 * rng.standard_normal((n, n))
    return ((f - f.min()) / (f.max() - f.min())).astype(np.float32)


def masks_for(n):
    cy, cx = rng.uniform(0.3 * n, 0.7 * n, 2)
    y, x = np.mgrid[0:n, 0:n]
    d = np.hypot(y - cy, x - cx)
    radii = rng.uniform(5, 20) + rng.normal(0, 2, 4)
    return [(d < max(r, 0)).astype(np.uint8) for r in radii]


slices = {}
for p in range(12):
    uid = '1.3.6.1.4.1.14519.5.2.1.6279.6001.%d' % (100000 + p * 7919 + seed)
    for s in range(int(rng.integers(2, 6))):
        name = 'LIDC-IDRI-%04d_slice_%d' % (p + 1, s)
        slices[name] = {'image': smooth_image(128), 'masks': masks_for(128), 'series_uid': uid,
                        'pixel_spacing': np.array([0.7, 0.7])}
for protocol in (2, 4, 5):
    with open(os.path.join(out, 'data_lidc_p%d.pickle' % protocol), 'wb') as f:
        pickle.dump(slices, f, protocol=protocol)

# PHiSeg's file: its own split by patient, images shifted by -0.5, labels last.
names = sorted(slices)
uids = sorted({v['series_uid'] for v in slices.values()})
parts = {'train': uids[:8], 'val': uids[8:10], 'test': uids[10:]}
truth = {}
with h5py.File(os.path.join(out, 'data_lidc.hdf5'), 'w') as f:
    for split, members in parts.items():
        chosen = [n for n in names if slices[n]['series_uid'] in members]
        images = np.stack([slices[n]['image'].astype(np.float64) - 0.5 for n in chosen])
        labels = np.stack([np.stack(slices[n]['masks'], -1) for n in chosen])
        ids = np.array([uids.index(slices[n]['series_uid']) * 1000 + 17 for n in chosen], np.int64)
        g = f.create_group(split)
        g.create_dataset('images', data=images, chunks=(1, 128, 128), compression='gzip')
        g.create_dataset('labels', data=labels)
        g.create_dataset('uids', data=ids)
        truth['hdf5_%s_images' % split] = images
        truth['hdf5_%s_labels' % split] = labels
        truth['hdf5_%s_uids' % split] = ids
for n in names:
    truth['pickle_image/' + n] = slices[n]['image']
    truth['pickle_masks/' + n] = np.stack(slices[n]['masks'])
    truth['pickle_uid/' + n] = np.array(slices[n]['series_uid'])
np.savez(os.path.join(out, 'truth.npz'), **truth)
print('wrote %d slices of %d patients to %s' % (len(slices), len(uids), out))
