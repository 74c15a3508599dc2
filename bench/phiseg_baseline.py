"""A NumPy implementation of the evaluation loops of PHiSeg's code (also used by the SSN
reference): one distance per ordered pair of maps, each a fresh pass over the images; HM-IoU
with scipy's Hungarian solver; NCC as PHiSeg's variance_ncc_dist. The definitions are those of
tests/data/golden/metrics.json. Used only as a baseline for bench/run_evaluate*.sh.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_distance(a, b, num_classes):
    """1 - mean over foreground classes of IoU (1 where a class is absent from both)."""
    ious = []
    for c in range(1, num_classes):
        a_c = a == c
        b_c = b == c
        union = np.logical_or(a_c, b_c).sum()
        ious.append(1.0 if union == 0 else np.logical_and(a_c, b_c).sum() / union)
    return 1.0 - np.mean(ious)


def distribution_metrics(samples, annotations, num_classes):
    n, m = len(samples), len(annotations)
    d_sy = np.zeros((n, m))
    d_ss = np.zeros((n, n))
    d_yy = np.zeros((m, m))
    for i in range(n):
        for j in range(m):
            d_sy[i, j] = iou_distance(samples[i], annotations[j], num_classes)
        for j in range(n):
            d_ss[i, j] = iou_distance(samples[i], samples[j], num_classes)
    for i in range(m):
        for j in range(m):
            d_yy[i, j] = iou_distance(annotations[i], annotations[j], num_classes)
    result = {
        "diversity": d_ss.mean(),
        "annotator_diversity": d_yy.mean(),
        "ged": 2 * d_sy.mean() - d_ss.mean() - d_yy.mean(),
    }
    if n % m == 0:
        cost = np.tile(d_sy, (1, n // m))
        rows, cols = linear_sum_assignment(cost)
        result["hm_iou"] = float(np.mean(1.0 - cost[rows, cols]))
    else:
        result["hm_iou"] = float("nan")
    return result


def variance_ncc_dist(sample_arr, gt_arr):
    """PHiSeg's loops: sample_arr [N, *sp, C] probabilities, gt_arr [M, *sp, C] one-hot."""
    def pixel_wise_xent(m_samp, m_gt, eps=1e-8):
        return -1.0 * np.sum(m_gt * np.log(m_samp + eps), axis=-1)

    def ncc(a, v):
        a = a.flatten()
        v = v.flatten()
        a = (a - np.mean(a)) / (np.std(a) * len(a))
        v = (v - np.mean(v)) / np.std(v)
        return np.correlate(a, v)[0]

    mean_seg = np.mean(sample_arr, axis=0)
    n, m = sample_arr.shape[0], gt_arr.shape[0]
    e_ss = np.mean([pixel_wise_xent(sample_arr[i], mean_seg) for i in range(n)], axis=0)
    total = 0.0
    for j in range(m):
        e_sy = np.mean([pixel_wise_xent(sample_arr[i], gt_arr[j]) for i in range(n)], axis=0)
        total += ncc(e_ss, e_sy)
    return total / m


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype=np.float64)[labels]
