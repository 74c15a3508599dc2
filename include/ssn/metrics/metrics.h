#pragma once

// Metrics of a predicted distribution of segmentations against a set of annotations, with the
// definitions the SSN, PHiSeg and MoSE evaluations use (see tests/data/golden/metrics.json):
//   d(a, b)   = 1 - mean over foreground classes of IoU (IoU = 1 where a class is absent from both)
//   GED       = 2 E d(s, y) - E d(s, s') - E d(y, y'), each E the plain mean over all ordered
//               pairs, i = j included
//   diversity = E d(s, s'), annotator_diversity = E d(y, y')
//   HM-IoU    = annotations tiled N / M times, optimal (Hungarian) matching on the N x N cost d,
//               mean of 1 - d over the matched pairs; NaN when N % M != 0.
//
// Shapes: N samples, M annotations, K classes, C = K channels of probabilities, S pixels/voxels.

#include <ATen/ATen.h>

#include <vector>

#include "ssn/metrics/overlap.h"

namespace ssn::metrics {

struct DistributionMetrics {
  double ged = 0.0;
  double diversity = 0.0;
  double annotator_diversity = 0.0;
  double hm_iou = 0.0;  ///< NaN when N % M != 0
};

/// samples [N, *spatial], annotations [M, *spatial], integer labels in [0, K).
DistributionMetrics distribution_metrics(const at::Tensor& samples, const at::Tensor& annotations,
                                         int64_t num_classes);

/// The same from packed maps (foreground_classes channels), so callers that also need Dice pack
/// once. Without `with_hm_iou` hm_iou is NaN and the O(N^3) matching is skipped (callers that
/// score many settings and need only GED and diversity).
DistributionMetrics distribution_metrics(const PackedLabels& samples,
                                         const PackedLabels& annotations, bool with_hm_iou = true);

/// The minimum total cost of a perfect matching of the rows and columns of a square cost matrix
/// [n, n] (Hungarian algorithm with potentials, O(n^3)). `assignment`, if given, receives the
/// column matched to each row.
double min_cost_assignment(const at::Tensor& cost, std::vector<int64_t>* assignment = nullptr);

/// PHiSeg's variance_ncc_dist: sample_probabilities [N, C, *spatial] (softmax of each sample),
/// annotations [M, *spatial] -> the mean over annotations of the normalised cross-correlation
/// between E_s[CE(s, mean)] and E_s[CE(s, y_j)] maps (eps = 1e-8 inside the logs, as PHiSeg).
/// NaN when either map is constant.
double variance_ncc(const at::Tensor& sample_probabilities, const at::Tensor& annotations);

/// variance_ncc of one-hot label maps samples [N, *spatial] (what a folder of sample label maps
/// holds), computed from the class frequencies without forming the one-hot tensor.
double variance_ncc_of_labels(const at::Tensor& samples, const at::Tensor& annotations,
                              int64_t num_classes);

/// variance_ncc_of_labels from the class frequencies of the samples [K, *spatial].
double variance_ncc_of_frequencies(const at::Tensor& frequencies, const at::Tensor& annotations);

/// variance_ncc from the moments it depends on: the mean over samples of the probabilities and of
/// log(p + 1e-8), both [C, *spatial].
double variance_ncc_from_moments(const at::Tensor& mean_probabilities,
                                 const at::Tensor& mean_log_probabilities,
                                 const at::Tensor& annotations);

/// Class-wise expected calibration error with `bins` equal-width confidence bins: for each class c,
/// the confidence of a pixel is probabilities[c] and its accuracy the fraction of annotations that
/// give it class c; ECE_c = sum_b (n_b / S) |mean accuracy_b - mean confidence_b|; returns the mean
/// over classes. probabilities [C, *spatial], annotations [M, *spatial].
double classwise_ece(const at::Tensor& probabilities, const at::Tensor& annotations,
                     int64_t bins = 10);

/// [K, *spatial] per-class frequency of the samples [N, *spatial].
at::Tensor class_frequencies(const at::Tensor& samples, int64_t num_classes);

/// [*spatial] pixel-wise entropy (nats) of the samples' class frequencies.
at::Tensor entropy_map(const at::Tensor& samples, int64_t num_classes);

}  // namespace ssn::metrics
