"""Checks a folder written by `ssn convert-lidc` against the source arrays (lidc_fixtures.py).

usage: check_lidc_conversion.py CONVERTED_DIR TRUTH_NPZ pickle|hdf5
Masks must equal the source exactly, images correlate with it at >= 0.9999 (and lie within half a
PNG step of it through lidc_conversion.json's map), no patient may be in two splits, and every
source slice must be there once. Prints the figures; exits 1 on any failure.
"""
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np
from PIL import Image

out, truth_path, kind = sys.argv[1], sys.argv[2], sys.argv[3]
truth = np.load(truth_path)
info = json.load(open(os.path.join(out, 'lidc_conversion.json')))
scale, offset = info['image_png_to_source']['scale'], info['image_png_to_source']['offset']
failures = []


def read_png(path):
    return np.array(Image.open(path)).astype(np.float64)


def compare(split, patient, name, image, masks, stats):
    stem = os.path.join(out, split, 'images', patient, name + '.png')
    if not os.path.exists(stem):
        failures.append('missing ' + stem)
        return
    got = offset + scale * read_png(stem)
    stats['corr'] = min(stats['corr'], np.corrcoef(got.ravel(), image.ravel())[0, 1])
    stats['err'] = max(stats['err'], np.abs(got - image).max())
    for a in range(masks.shape[0]):
        m = read_png(os.path.join(out, split, 'gt', patient, '%s_l%d.png' % (name, a + 1)))
        if not np.array_equal(m != 0, masks[a] != 0) or not set(np.unique(m)) <= {0, 255}:
            failures.append('mask %d of %s/%s differs' % (a + 1, patient, name))
    stats['slices'] += 1


stats = {'corr': 1.0, 'err': 0.0, 'slices': 0}
if kind == 'pickle':
    names = [k.split('/', 1)[1] for k in truth.files if k.startswith('pickle_image/')]
    for n in names:
        patient = re.sub(r'[^A-Za-z0-9._-]', '_', str(truth['pickle_uid/' + n]))
        splits = [s for s in ('train', 'val', 'test')
                  if os.path.exists(os.path.join(out, s, 'images', patient, n + '.png'))]
        if len(splits) != 1:
            failures.append('%s is in splits %s' % (n, splits))
            continue
        compare(splits[0], patient, n, truth['pickle_image/' + n], truth['pickle_masks/' + n], stats)
else:
    for split in ('train', 'val', 'test'):
        counter = defaultdict(int)
        for i, uid in enumerate(truth['hdf5_%s_uids' % split]):
            name = 'slice_%03d' % counter[uid]
            counter[uid] += 1
            compare(split, str(uid), name, truth['hdf5_%s_images' % split][i],
                    np.moveaxis(truth['hdf5_%s_labels' % split][i], -1, 0), stats)
patients = {s: set(os.listdir(os.path.join(out, s, 'images'))) for s in ('train', 'val', 'test')}
crossing = (patients['train'] & patients['val']) | (patients['train'] & patients['test']) | \
           (patients['val'] & patients['test'])
if crossing:
    failures.append('patients in two splits: %s' % sorted(crossing))
written = sum(len(files) for s in ('train', 'val', 'test')
              for _, _, files in os.walk(os.path.join(out, s, 'images')))
if written != stats['slices']:
    failures.append('%d images written, %d source slices' % (written, stats['slices']))
if stats['corr'] < 0.9999:
    failures.append('image correlation %.6f < 0.9999' % stats['corr'])
if stats['err'] > scale / 2 + 1e-9:
    failures.append('image error %.3g > half a PNG step %.3g' % (stats['err'], scale / 2))
print('%s: %d slices, masks exact: %s, 1 - min image correlation %.1e, max image error %.2e '
      '(half a step %.2e), patients per split %s, none in two splits: %s'
      % (out, stats['slices'], not any('mask' in f for f in failures), 1 - stats['corr'], stats['err'],
         scale / 2, {s: len(p) for s, p in patients.items()}, not crossing))
for f in failures[:10]:
    print('FAIL: ' + f)
sys.exit(1 if failures else 0)
