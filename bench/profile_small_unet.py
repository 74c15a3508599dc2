#!/usr/bin/env python3
"""Where a training step of the demo's network shape goes, by PyTorch's profiler.

Usage: /usr/bin/python3 bench/profile_small_unet.py BATCH [--threads 2]

A U-Net shaped like configs/lidc_small_lowrank.json's (filters 16 32 64 64, two 3x3 convolutions
without bias, each followed by batch norm and ReLU, per level; max pooling down, bilinear
upsampling and concatenation up; 1x1 mean, log-diagonal and rank-10 factor convolutions for 2
classes, the factor's without bias: the 303,508 parameters and 1,166 buffer elements (batch-norm
statistics and step counters) that `ssn model --config-file configs/lidc_small_lowrank.json`
lists) on a random batch of 1 x 64 x 64 images, with a stand-in loss (squares of the outputs) and Adam. Prints the parameter count, the seconds
per step (mean of 10 after 3 warm-up steps) and the profiler's table of 5 more steps, sorted by
each operator's own time. It is not a baseline of ssn's step (the loss is not the SSN's); it
says which LibTorch operators the network's shape costs (docs/performance.md, "A step of the
demo's network by batch size").
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile


def block(channels_in, channels_out):
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out), nn.ReLU(),
        nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out), nn.ReLU())


class SmallUNet(nn.Module):
    def __init__(self, filters=(16, 32, 64, 64), classes=2, rank=10):
        super().__init__()
        self.down = nn.ModuleList()
        channels = 1
        for width in filters:
            self.down.append(block(channels, width))
            channels = width
        self.up = nn.ModuleList()
        for level in range(len(filters) - 2, -1, -1):
            self.up.append(block(channels + filters[level], filters[level]))
            channels = filters[level]
        self.mean = nn.Conv2d(channels, classes, 1)
        self.log_diag = nn.Conv2d(channels, classes, 1)
        self.factor = nn.Conv2d(channels, classes * rank, 1, bias=False)

    def forward(self, x):
        skips = []
        for level, layer in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2)
            x = layer(x)
            skips.append(x)
        for level, layer in enumerate(self.up):
            skip = skips[-2 - level]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = layer(torch.cat([x, skip], 1))
        return self.mean(x), self.log_diag(x), self.factor(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("batch", type=int)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SmallUNet()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    images = torch.randn(args.batch, 1, 64, 64)
    print(f"parameters {sum(p.numel() for p in model.parameters())}, "
          f"buffers {sum(b.numel() for b in model.buffers())}")

    def step():
        optimizer.zero_grad()
        mean, log_diag, factor = model(images)
        loss = mean.square().mean() + log_diag.exp().mean() + factor.square().mean()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(10):
        step()
    print(f"batch {args.batch}, {args.threads} threads: {(time.perf_counter() - start) / 10:.4f} s per step")
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(5):
            step()
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
