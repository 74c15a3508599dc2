#pragma once

// The paper's 1-D toy problem (Monteiro et al., 2020, section 4.1): 21 binary pixels and two
// equally likely targets that differ only in the middle third. A low-rank Gaussian over the logits
// can put all of its uncertainty on "the middle third is on or off together"; independent normals
// cannot, and pay about ln(1/2) per ambiguous pixel.

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace ssn::toy {

struct ToyOptions {
  /// S: pixels of the 1-D image (a multiple of 3).
  int64_t num_pixels = 21;
  /// R of the low-rank model (the diagonal model has R = 0).
  int64_t rank = 2;
  /// Phase 1: Adam steps on the mean alone, covariance frozen (as the paper's toy run).
  int64_t mean_steps = 500;
  /// Phase 2: Adam steps on mean and covariance together.
  int64_t joint_steps = 3000;
  double learning_rate = 0.01;
  /// M per training step (antithetic, even).
  int64_t num_mc_samples = 200;
  /// Samples of the final Monte-Carlo estimate of the log-likelihood (>= 1000).
  int64_t num_eval_samples = 20000;
  uint64_t seed = 0;
};

/// One fitted model.
struct ToyFit {
  int64_t rank = 0;
  /// mean over the two targets of log p(y) (Monte-Carlo estimate with num_eval_samples draws).
  double log_likelihood = 0.0;
  at::Tensor mean;        ///< [S]
  at::Tensor covariance;  ///< [S, S]
  at::Tensor samples;     ///< [K, S] sigmoid(eta) of K fresh samples, for the figure
};

struct ToyResult {
  at::Tensor targets;  ///< [2, S] in {0, 1}
  ToyFit low_rank;
  ToyFit diagonal;
};

/// [2, S]: first third on in both, middle third on in one and off in the other, last third off.
at::Tensor toy_targets(int64_t num_pixels);

/// eta [M, S] logits, targets [T, S] in {0, 1} -> [T]: the Monte-Carlo log-likelihood
/// log (1/M) sum_m prod_s Bernoulli(y_s; sigmoid(eta_ms)) of each target.
at::Tensor toy_log_likelihood(const at::Tensor& eta, const at::Tensor& targets);

/// Fits N(mu, P P^T + D) over the S logits (rank 0: diagonal) to the two targets.
ToyFit fit_toy_model(int64_t rank, const ToyOptions& options);

/// Both models with the same optimiser, schedule and seed.
ToyResult run_toy_problem(const ToyOptions& options);

/// An RGB picture [H, W, 3] uint8: the two targets on top, then per model (low-rank left, diagonal
/// right) the mean, the covariance matrix (blue < 0 < red, each scaled to its largest magnitude)
/// and sigmoid(eta) of a few samples (white 0 to black 1, on a grey background).
at::Tensor render_toy_figure(const ToyResult& result);

}  // namespace ssn::toy
