"""The PyTorch baseline of `ssn benchmark train --config-file configs/lidc_unet_rank10.json`:
PHiSeg's network (tests/python/phiseg_proposed.py) with the SSN loss written the reference's way
(torch.distributions.LowRankMultivariateNormal, antithetic rsample, F.cross_entropy summed over
pixels, logsumexp over 20 samples), Adam 1e-3, one random batch of 12 images of 128 x 128,
autograd. Seconds per step: the median of --steps after --warmup.

Usage: /usr/bin/python3 bench/pytorch_train_lidc.py [--steps 5] [--warmup 1] [--threads 2]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from phiseg_proposed import Proposed  # noqa: E402


def ssn_loss(mean, log_diag, factor, target, rank, samples=20):
    b, c, h, w = mean.shape
    loc = mean.reshape(b, -1)
    diag = log_diag.exp().reshape(b, -1) + 1e-5
    cov_factor = factor.view(b, rank, c, h, w).permute(0, 2, 3, 4, 1).reshape(b, -1, rank)
    dist = torch.distributions.LowRankMultivariateNormal(loc, cov_factor, diag)
    half = dist.rsample((samples // 2,))
    eta = torch.cat([half, 2 * loc.unsqueeze(0) - half])  # antithetic pairs
    logits = eta.view(samples * b, c, h, w)
    labels = target.unsqueeze(0).expand(samples, b, h, w).reshape(samples * b, h, w)
    log_prob = -F.cross_entropy(logits, labels, reduction="none").view(samples, b, -1).sum(-1)
    return -(torch.logsumexp(log_prob, 0) - math.log(samples)).mean()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Proposed(2, 10).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(12, 1, 128, 128)
    target = torch.randint(0, 2, (12, 128, 128))
    seconds = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        mean, log_diag, factor = model(images)
        loss = ssn_loss(mean, log_diag, factor, target, 10)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds_per_step": statistics.median(seconds), "threads": args.threads,
                      "loss": loss.item()}))


if __name__ == "__main__":
    main()
