"""The PyTorch baseline of bench/ssn_micro_bench.cpp: the same operations as the reference SSN
implementation performs them (torch.distributions.LowRankMultivariateNormal, antithetic samples,
cross_entropy, logsumexp), at the same sizes and thread count. Prints JSON {name: seconds}.

Usage: python3 pytorch_micro.py THREADS [REPEATS] [DEVICE]
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
import torch.distributions as td

B, C, SIDE, R, M = 8, 2, 128, 10, 20
N = C * SIDE * SIDE


def timed(fn, repeats, device):
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def reference_loss(dist, target):
    # As the reference: M/2 draws, mirrored about the mean, then cross-entropy and logsumexp.
    half = dist.rsample((M // 2,))
    mean = dist.mean.unsqueeze(0)
    half = half - mean
    samples = torch.cat([half, -half]) + mean
    logits = samples.view(M * B, C, -1)
    labels = target.unsqueeze(0).expand((M,) + target.shape).reshape(M * B, -1)
    log_prob = -F.cross_entropy(logits, labels, reduction="none").view(M, B, -1)
    return -torch.mean(torch.logsumexp(log_prob.sum(-1), dim=0) - math.log(M))


def main():
    threads = int(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    device = torch.device(sys.argv[3] if len(sys.argv) > 3 else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loc = torch.randn(B, N, device=device)
    factor = 0.1 * torch.randn(B, N, R, device=device)
    diag = torch.rand(B, N, device=device) + 0.1
    value = torch.randn(B, N, device=device)
    target = torch.randint(C, (B, SIDE * SIDE), device=device)

    results = {"threads": threads, "torch": torch.__version__, "device": str(device)}
    with torch.no_grad():
        dist = td.LowRankMultivariateNormal(loc, factor, diag)
        results["rsample"] = timed(lambda: dist.rsample((M,)), repeats, device)
        results["log_prob"] = timed(
            lambda: td.LowRankMultivariateNormal(loc, factor, diag).log_prob(value), repeats, device)

    params = [t.clone().requires_grad_(True) for t in (loc, factor, diag)]

    def step():
        for p in params:
            p.grad = None
        dist = td.LowRankMultivariateNormal(*params)
        reference_loss(dist, target).backward()

    results["loss_forward_backward"] = timed(step, repeats, device)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
