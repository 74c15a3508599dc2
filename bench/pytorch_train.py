"""The PyTorch baselines of `ssn benchmark train`: the paper's two set-ups written the reference's
way, one random batch of the config's shapes, autograd, Adam 1e-3.

  lidc:  PHiSeg's `proposed` network (tests/python/phiseg_proposed.py), 12 images of 128 x 128,
         rank 10, 20 Monte-Carlo samples (configs/lidc_unet_rank10.json).
  brats: DeepMedic as the reference builds it (pathways at scale 5, 3 and 1, feature maps
         30 30 40 40 40 40 50 50, fully connected 250 250, pre-activation blocks), 10 patches of
         4 x 110^3 cropped to the pathways' inputs, output 30^3, 4 classes, rank 10, 20 samples
         (tests/data/reference/rank_10_mc_20_patch_110.json); stated here from the network's
         description, not copied.

The loss: torch.distributions.LowRankMultivariateNormal over the whole logit map, rsample of
half the samples and their antithetic mirrors, F.cross_entropy summed over pixels, logsumexp
over the samples.

Seconds per step: the median of --steps after --warmup. Peak tensor memory (CPU): one more step
under the profiler with profile_memory, every allocation and free in order, plus the gradients and
Adam's state alive at the step's start; the same quantity as ssn's CpuMemoryTracker reset after
the warm-up (tensors allocated after the model and the batch). On CUDA:
torch.cuda.max_memory_allocated over the timed steps, less the bytes allocated before them.
--precision bf16 | fp16 runs the network under torch.autocast (fp16 with a GradScaler), the loss
in float32, as ssn's training.precision does.

Usage: /usr/bin/python3 bench/pytorch_train.py lidc|brats [--steps 5] [--warmup 1] [--threads 2]
       [--batch-size N] [--device cpu|cuda] [--precision fp32|bf16|fp16]
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
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from phiseg_proposed import Proposed  # noqa: E402


def ssn_loss(mean, log_diag, factor, target, rank, mask=None, samples=20):
    b, c = mean.shape[:2]
    spatial = mean.shape[2:]
    mean, log_diag, factor = mean.float(), log_diag.float(), factor.float()
    diag = log_diag.exp() + 1e-5
    if mask is not None:  # the reference: no covariance outside the sampling mask
        m = mask.unsqueeze(1).to(mean.dtype)
        diag = diag * m + 1e-5
        factor = factor * m
    loc = mean.reshape(b, -1)
    order = [0] + list(range(2, 3 + len(spatial))) + [1]
    cov_factor = factor.view(b, rank, c, *spatial).permute(*order).reshape(b, -1, rank)
    dist = torch.distributions.LowRankMultivariateNormal(loc, cov_factor, diag.reshape(b, -1))
    half = dist.rsample((samples // 2,))
    eta = torch.cat([half, 2 * loc.unsqueeze(0) - half])  # antithetic pairs
    logits = eta.view(samples * b, c, *spatial)
    labels = target.unsqueeze(0).expand(samples, *target.shape).reshape(samples * b, *spatial)
    log_prob = -F.cross_entropy(logits, labels, reduction="none").view(samples, b, -1).sum(-1)
    return -(torch.logsumexp(log_prob, 0) - math.log(samples)).mean()


class PreActBlock(nn.Module):
    """BatchNorm, PReLU, dropout, convolution without bias; the input added, cropped, when the
    widths agree. The first block of a pathway has no pre-activation."""

    def __init__(self, cin, cout, kernel, dropout, first):
        super().__init__()
        self.first, self.kernel, self.residual = first, kernel, cin == cout
        self.norm = nn.BatchNorm3d(cin)
        self.prelu = nn.PReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv3d(cin, cout, kernel, bias=False)

    def forward(self, x):
        h = x if self.first else self.dropout(self.prelu(self.norm(x)))
        out = self.conv(h)
        if self.residual and self.kernel > 1:
            t = self.kernel // 2
            out = out + x[:, :, t:-t, t:-t, t:-t]
        elif self.residual:
            out = out + x
        return out


def crop_center(x, size):
    for axis, s in zip((2, 3, 4), size):
        c = x.shape[axis]
        x = x.narrow(axis, c // 2 - s // 2, s)
    return x


class DeepMedic(nn.Module):
    def __init__(self, cin=4, classes=4, rank=10, maps=(30, 30, 40, 40, 40, 40, 50, 50),
                 fully=(250, 250), factors=(5, 3, 1), dropout=(0.0, 0.5, 0.5)):
        super().__init__()
        self.factors, self.shrink, self.classes, self.rank = factors, 2 * len(maps), classes, rank
        self.paths = nn.ModuleList()
        for _ in factors:
            blocks, width = [], cin
            for i, m in enumerate(maps):
                blocks.append(PreActBlock(width, m, 3, 0.0, i == 0))
                width = m
            self.paths.append(nn.Sequential(*blocks))
        widths = [maps[-1] * len(factors)] + list(fully) + [maps[-1]]
        self.fully = nn.Sequential(*[PreActBlock(widths[i], widths[i + 1], 1, dropout[i], False)
                                     for i in range(len(widths) - 1)])
        self.mean = nn.Conv3d(maps[-1], classes, 1)
        self.log_diag = nn.Conv3d(maps[-1], classes, 1)
        self.factor = nn.Conv3d(maps[-1], classes * rank, 1)

    def output_size(self, n):
        s0 = self.factors[0]
        return (n // s0 - self.shrink) * s0

    def forward(self, image):
        out = [self.output_size(n) for n in image.shape[2:]]
        features = []
        for s, path in zip(self.factors, self.paths):
            need = [(-(-o // s) + self.shrink) * s for o in out]
            x = crop_center(image, need)
            if s > 1:
                x = x[:, :, s // 2::s, s // 2::s, s // 2::s]
            x = path(x)
            if s > 1:
                for axis in (2, 3, 4):
                    x = x.repeat_interleave(s, axis)
            features.append(crop_center(x, out))
        h = torch.relu(self.fully(torch.cat(features, 1)))
        return self.mean(h), self.log_diag(h), self.factor(h)


def profiled_peak(step):
    """Peak of live tensor bytes allocated during step(), from the profiler's allocation events
    in order (relative to the step's start)."""
    from torch.autograd import profiler
    with profiler.profile(profile_memory=True, use_kineto=True) as prof:
        step()
    events = [e for e in prof.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_us())  # stable: equal times keep the recorded order
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=["lidc", "brats"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the config's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--phases", action="store_true",
                        help="also time forward, loss, backward and optimiser apart (synchronised)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.model == "lidc":
        batch = args.batch_size or 12
        model = Proposed(2, 10)
        images = torch.randn(batch, 1, 128, 128)
        target = torch.randint(0, 2, (batch, 128, 128))
        mask = None
    else:
        batch = args.batch_size or 10
        model = DeepMedic()
        images = torch.randn(batch, 4, 110, 110, 110)
        out = model.output_size(110)
        target = torch.randint(0, 4, (batch, out, out, out))
        mask = torch.ones(batch, out, out, out, dtype=torch.bool)
    model = model.to(device).train()
    images, target = images.to(device), target.to(device)
    mask = mask.to(device) if mask is not None else None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast_type = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.cuda.amp.GradScaler(enabled=args.precision == "fp16")
    cuda = device.type == "cuda"

    phase_names = ["forward", "loss", "backward", "optimizer"]
    phase_seconds = {name: [] for name in phase_names}
    timing = {"on": False}

    def end_phase(name, since):
        """With --phases on the timed steps: synchronise, record, restart the clock."""
        if not timing["on"]:
            return since
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        phase_seconds[name].append(now - since)
        return now

    def step():
        since = time.perf_counter()
        optimizer.zero_grad()
        if autocast_type is None:
            mean, log_diag, factor = model(images)
        else:
            with torch.autocast(device.type, dtype=autocast_type):
                mean, log_diag, factor = model(images)
        since = end_phase("forward", since)
        loss = ssn_loss(mean, log_diag, factor, target, 10, mask)
        since = end_phase("loss", since)
        scaler.scale(loss).backward()
        since = end_phase("backward", since)
        scaler.step(optimizer)
        scaler.update()
        loss.item()
        end_phase("optimizer", since)
        return loss

    seconds = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup and cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        timing["on"] = args.phases and i >= args.warmup
        loss = step().item()
        timing["on"] = False
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - before
    else:
        alive = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                    if p.grad is not None)
        for state in optimizer.state.values():
            alive += sum(t.numel() * t.element_size() for t in state.values()
                         if torch.is_tensor(t))
        peak = alive + profiled_peak(step)
    median = statistics.median(seconds)
    report = {"model": args.model, "device": str(device), "precision": args.precision,
              "batch_size": batch, "threads": torch.get_num_threads(),
              "seconds_per_step": median, "examples_per_second": batch / median,
              "peak_tensor_bytes": peak, "loss": loss}
    if args.phases:
        report["phase_seconds"] = {n: statistics.median(phase_seconds[n]) for n in phase_names}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
