#pragma once

// Training objectives: the SSN Monte-Carlo likelihood (Monteiro et al., 2020, eq. 7) and the
// cross-entropy of the deterministic baseline, behind one interface.
//
// Shapes: B batch, C classes, S pixels/voxels, N = C*S, R rank, M Monte-Carlo samples.

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <memory>
#include <string>

#include "ssn/distributions/low_rank_normal.h"

namespace ssn::loss {

/// sample_log_likelihood [M, B] (log p(y | eta_m) per sample) -> [B]:
/// log( (1/M) sum_m exp(l_m) ), the Monte-Carlo estimate of log p(y | x), computed with logsumexp.
at::Tensor monte_carlo_log_likelihood(const at::Tensor& sample_log_likelihood);

/// The SSN loss for given antithetic noise eps_W [M/2, B, R], eps_D [M/2, B, N]: samples are the
/// M/2 draws loc + delta followed by their mirrors loc - delta, and
///   loss = -mean_b [ logsumexp_m l_mb - log M ] - all_samples_weight * mean_b mean_m l_mb,
/// l_mb = sum_s log softmax(eta_m)_s[y_s]. The second term (0 in the paper) makes every sample pay
/// for its distance to the target, where the logsumexp gives samples far from it no weight.
/// distribution's event shape must be (C, *spatial); target [B, *spatial] holds labels in [0, C).
/// A target [B, A, *spatial] holds A annotations per example: l_mba is each one's, and the loss
/// is the mean over b and a of logsumexp_m l_mba - log M (the same samples for all A), minus
/// all_samples_weight times the mean of l_mba.
/// Gradients flow to loc, cov_factor and cov_diag. The backward pass recomputes the samples in
/// chunks instead of storing them, so the peak working memory stays near the M x B x N logits
/// (with A annotations, plus one chunk's gathered logits, A / C times the chunk's size).
at::Tensor ssn_loss_from_noise(const LowRankNormal& distribution, const at::Tensor& target,
                               const at::Tensor& eps_W, const at::Tensor& eps_D,
                               double all_samples_weight = 0.0);

/// Which rows of a larger batch the distribution's batch is (data-parallel training): the noise
/// is drawn for all `global_batch` rows, as one process would, and rows offset .. offset + B - 1
/// are used. global_batch 0: the batch is the whole batch.
struct BatchSlice {
  int64_t offset = 0;
  int64_t global_batch = 0;
};

/// The SSN loss with M (even) fresh antithetic samples.
at::Tensor ssn_loss(const LowRankNormal& distribution, const at::Tensor& target,
                    int64_t num_mc_samples, c10::optional<at::Generator> generator = c10::nullopt,
                    double all_samples_weight = 0.0, const BatchSlice& slice = {});

/// logits [B, C, *spatial], target [B, *spatial] -> mean pixel-wise softmax cross-entropy;
/// target [B, A, *spatial] (A annotations per example) -> its mean over the A annotations.
at::Tensor cross_entropy_loss(const at::Tensor& logits, const at::Tensor& target);

enum class LossKind {
  kCrossEntropy,         ///< deterministic baseline
  kStochasticMcIntegral  ///< the SSN loss
};

struct LossOptions {
  LossKind kind = LossKind::kStochasticMcIntegral;
  /// M for the SSN loss; must be even.
  int64_t num_mc_samples = 20;
  /// See ssn_loss_from_noise; >= 0.
  double all_samples_weight = 0.0;
};

/// One interface for every model kind: the trainer calls it with what the model produced.
class SegmentationLoss {
 public:
  explicit SegmentationLoss(LossOptions options);

  /// mean_logits [B, C, *spatial]; distribution over the same logits (required for the SSN loss,
  /// ignored by cross-entropy); target [B, *spatial] or [B, A, *spatial] -> scalar loss.
  /// With a slice, the batch is rows of a larger one (ssn_loss).
  at::Tensor operator()(const at::Tensor& mean_logits, const LowRankNormal* distribution,
                        const at::Tensor& target,
                        c10::optional<at::Generator> generator = c10::nullopt,
                        const BatchSlice& slice = {}) const;

  const LossOptions& options() const { return options_; }

 private:
  LossOptions options_;
};

}  // namespace ssn::loss
