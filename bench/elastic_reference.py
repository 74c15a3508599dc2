"""Time the reference's per-case elastic deformation step (ssn/nifti/augmention.py of the SSN
code: three crops of its int32 maps, clipped pull-back indices, ravel indexing of every map) on a
4-channel volume of the given shape, with maps of random integers in place of its Perlin maps
(the time does not depend on their values). The maps themselves (num_maps x noise_shape int32)
are its memory.

Usage: /usr/bin/python3 bench/elastic_reference.py 155,240,240 [repeats]
"""
import json
import sys
import time

import numpy as np


def deform(image, target, mask, maps, rng):
    shape = target.shape
    index = 0
    stride = 1
    for axis in reversed(range(3)):
        field = maps[rng.randint(len(maps))]
        start = [rng.randint(0, n - s + 1) for n, s in zip(field.shape, shape)]
        d = field[start[0]:start[0] + shape[0], start[1]:start[1] + shape[1],
                  start[2]:start[2] + shape[2]]
        grid = np.arange(shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
        index = index + np.clip(grid + d, 0, shape[axis] - 1) * stride
        stride *= shape[axis]
    flat = index.ravel()
    image = np.stack([c.ravel()[flat].reshape(shape) for c in image])
    return image, target.ravel()[flat].reshape(shape), mask.ravel()[flat].reshape(shape)


def main():
    shape = [int(v) for v in sys.argv[1].split(",")]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = np.random.RandomState(0)
    maps = [rng.randint(-13, 14, size=(400, 400, 400)).astype(np.int32) for _ in range(3)]
    image = rng.randn(4, *shape).astype(np.float32)
    target = rng.randint(0, 4, size=shape).astype(np.int64)
    mask = np.ones(shape, dtype=bool)
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        deform(image, target, mask, maps, rng)
        seconds.append(time.perf_counter() - begin)
    print(json.dumps({"shape": shape, "seconds": sorted(seconds)[len(seconds) // 2],
                      "maps_bytes": sum(m.nbytes for m in maps)}))


if __name__ == "__main__":
    main()
