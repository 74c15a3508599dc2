"""PHiSeg's `proposed` likelihood network (the SSN paper's LIDC model), stated independently in
PyTorch from PHiSeg's TensorFlow code (MiguelMonteiro/PHiSeg-code, phiseg/model_zoo/likelihoods.py,
function `proposed`; experiment phiseg/experiments/proposed_4annot.py), to check the parameter
count and output shapes that `ssn model` reports for configs/lidc_unet_rank10.json.

Usage: phiseg_proposed.py CLASSES RANK SIZE -> one JSON line: parameters, buffers, shapes.
"""
import json
import sys

import torch
from torch import nn


def conv_bn_relu(cin, cout, kernel):
    # TF conv2D with batch norm: no bias; contrib batch_norm(scale, centre, eps 1e-3, decay 0.99).
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.ReLU()]


def stage(cin, cout, kernel=3, layers=3):
    modules = []
    for i in range(layers):
        modules += conv_bn_relu(cin if i == 0 else cout, cout, kernel)
    return nn.Sequential(*modules)


def upsample_tf1(x):
    # tf.image.resize_images, bilinear, align_corners False: output i reads input i / 2.
    for dim in (2, 3):
        n = x.shape[dim]
        nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        x = torch.stack([x, (x + nxt) / 2], dim + 1).flatten(dim, dim + 1)
    return x


class Proposed(nn.Module):
    def __init__(self, classes, rank, base=32):
        super().__init__()
        widths = [base, 2 * base, 4 * base, 6 * base, 6 * base, 6 * base, 6 * base]
        self.down = nn.ModuleList(
            stage(1 if i == 0 else widths[i - 1], widths[i]) for i in range(len(widths)))
        up, below = [], widths[-1]
        for level in range(len(widths) - 2, -1, -1):
            # The convolutions of a decoder level are as wide as the level below it.
            up.append(stage(below + widths[level], widths[level + 1]))
            below = widths[level + 1]
        self.up = nn.ModuleList(up)
        self.recomb = stage(below, base, kernel=1)
        self.mean = nn.Conv2d(base, classes, 1)
        self.log_diag = nn.Conv2d(base, classes, 1)
        self.factor = nn.Conv2d(base, classes * rank, 1)

    def forward(self, x):
        skips = []
        for i, s in enumerate(self.down):
            x = s(nn.functional.avg_pool2d(x, 2) if i else x)
            skips.append(x)
        for s, skip in zip(self.up, reversed(skips[:-1])):
            x = s(torch.cat([upsample_tf1(x), skip], 1))
        x = self.recomb(x)
        return self.mean(x), self.log_diag(x), self.factor(x)


def main():
    classes, rank, size = (int(a) for a in sys.argv[1:4])
    model = Proposed(classes, rank).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, 1, size, size))
    print(json.dumps({
        "parameters": sum(p.numel() for p in model.parameters()),
        "buffers": sum(b.numel() for b in model.buffers()),
        "shapes": [list(o.shape) for o in outputs],
        "upsampled": upsample_tf1(torch.arange(3.0).view(1, 1, 1, 3).expand(1, 1, 3, 3))[0, 0, 0]
        .tolist(),
    }))


if __name__ == "__main__":
    main()
