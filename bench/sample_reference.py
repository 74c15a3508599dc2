"""The baseline of `ssn benchmark sample`: the reference's evaluation sampler, stated here from
its description (biomedia-mira/stochastic_segmentation_networks, evaluation/running_metrics/
samplers.py and generate_samples.py): the maps, read as float32, are cast to float64; one
torch.distributions.LowRankMultivariateNormal over the whole volume (C x D x H x W events, the
factor [N, R], 1e-3 added to the diagonal); samples drawn in blocks of two with dist.sample,
softmax and argmax over the classes for each block.

Prints one JSON line: seconds per sample (all --num-samples, no profiler), and the peak tensor
memory from the profiler's allocation events over the maps' creation and one block (the peak
repeats every block), in the same sense as ssn's CpuMemoryTracker; the process's peak RSS.

Usage: /usr/bin/python3 bench/sample_reference.py [--shape 155,240,240] [--classes 4]
       [--rank 10] [--num-samples 20] [--threads 2]
"""
import argparse
import json
import resource
import time

import torch


def make_maps(classes, rank, shape, generator):
    # As read from the predictions' NIfTI files: float32, classes first.
    mean = torch.randn((classes,) + shape, generator=generator)
    cov_diag = (torch.randn((classes,) + shape, generator=generator) * 0.5 - 2.0).exp()
    cov_factor = torch.randn((classes * rank,) + shape, generator=generator) * 0.3
    return mean, cov_diag, cov_factor


def build(mean, cov_diag, cov_factor, rank):
    mean, cov_diag, cov_factor = mean.double(), cov_diag.double(), cov_factor.double()
    dist = torch.distributions.LowRankMultivariateNormal(
        loc=mean.reshape(-1), cov_factor=cov_factor.reshape(rank, -1).transpose(1, 0),
        cov_diag=cov_diag.reshape(-1) + 1e-3, validate_args=False)
    return dist, mean.shape


def draw(dist, shape, count):
    logits = dist.sample((count,)).view((count,) + tuple(shape))
    probabilities = torch.softmax(logits, dim=1)
    labels = torch.argmax(logits, dim=1)
    return labels, probabilities


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="155,240,240")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    generator = torch.Generator().manual_seed(0)

    maps = make_maps(args.classes, args.rank, shape, generator)
    dist, full_shape = build(*maps, args.rank)
    start = time.perf_counter()
    for first in range(0, args.num_samples, 2):
        draw(dist, full_shape, min(2, args.num_samples - first))
    seconds = time.perf_counter() - start
    del dist, maps

    from torch.autograd import profiler
    with profiler.profile(profile_memory=True, use_kineto=True) as prof:
        maps = make_maps(args.classes, args.rank, shape, generator)
        dist, full_shape = build(*maps, args.rank)
        draw(dist, full_shape, min(2, args.num_samples))
    events = [e for e in prof.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_us())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    print(json.dumps({"shape": list(shape), "classes": args.classes, "rank": args.rank,
                      "num_samples": args.num_samples, "threads": torch.get_num_threads(),
                      "seconds": seconds, "seconds_per_sample": seconds / args.num_samples,
                      "peak_tensor_bytes": peak,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
