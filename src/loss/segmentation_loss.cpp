#include "ssn/loss/segmentation_loss.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/functional/loss.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace ssn::loss {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Each chunk of half-samples forms about this fraction of the M x B x N logits at once, so the
// working set beyond the saved noise (half of M x B x N) stays well under M x B x N.
constexpr int64_t kChunksPerHalf = 4;

int64_t chunk_size(int64_t half) {
  return std::max<int64_t>(1, (half + kChunksPerHalf - 1) / kChunksPerHalf);
}

// eta [m, B, C*S], target_index [B, A, S] (A annotations per example) -> [m, B, A]:
// sum_s log softmax(eta)_s[y_as], without materialising the full log-softmax (logsumexp and the
// gathered logits are C / A times smaller).
at::Tensor sample_log_likelihood(const at::Tensor& eta, const at::Tensor& target_index,
                                 int64_t num_classes) {
  const int64_t m = eta.size(0);
  const int64_t batch = eta.size(1);
  const at::Tensor logits = eta.view({m, batch, num_classes, -1});
  const at::Tensor picked =
      logits.gather(/*dim=*/2, target_index.unsqueeze(0).expand({m, -1, -1, -1}));  // [m, B, A, S]
  return (picked - logits.logsumexp(/*dim=*/2, /*keepdim=*/true)).sum(/*dim=*/-1);
}

// d loss / d eta for one chunk: sum_a coefficient[m, b, a] * (softmax(eta) - onehot(y_a)),
// [m, B, C*S].
at::Tensor logit_gradient(const at::Tensor& eta, const at::Tensor& target_index,
                          const at::Tensor& coefficient, int64_t num_classes) {
  const int64_t m = eta.size(0);
  const int64_t batch = eta.size(1);
  const int64_t annotations = target_index.size(1);
  at::Tensor grad = eta.view({m, batch, num_classes, -1}).softmax(/*dim=*/2);
  const at::Tensor index = target_index.unsqueeze(0).expand({m, -1, -1, -1});  // [m, B, A, S]
  if (annotations == 1) {
    // (softmax - onehot) * coefficient: the paper's case, in the order of operations (and so
    // with the rounding) it had before several annotations were possible.
    grad.scatter_add_(/*dim=*/2, index, at::full(index.sizes(), -1.0, grad.options()));
    grad.mul_(coefficient.view({m, batch, 1, 1}));
  } else {
    grad.mul_(coefficient.sum(/*dim=*/2).view({m, batch, 1, 1}));
    grad.scatter_add_(/*dim=*/2, index,
                      coefficient.neg().view({m, batch, annotations, 1}).expand(index.sizes()));
  }
  return grad.view({m, batch, -1});
}

// The SSN loss with an analytic backward pass. Autograd through the plain formula would keep the
// samples, their log-softmax and the mirrored copy alive (several times M x B x N); here the
// forward keeps only the noise and the [M, B] per-sample likelihoods, and the backward recomputes
// the samples chunk by chunk.
struct SsnLossFunction : public torch::autograd::Function<SsnLossFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& loc,
                            const at::Tensor& cov_factor, const at::Tensor& cov_diag,
                            const at::Tensor& eps_W, const at::Tensor& eps_D,
                            const at::Tensor& target_index, int64_t num_classes,
                            double all_samples_weight) {
    const int64_t half = eps_W.size(0);
    const int64_t step = chunk_size(half);
    std::vector<at::Tensor> plus, minus;
    for (int64_t start = 0; start < half; start += step) {
      const int64_t stop = std::min(half, start + step);
      at::Tensor delta = low_rank_perturbation(cov_factor, cov_diag, eps_W.slice(0, start, stop),
                                               eps_D.slice(0, start, stop));
      plus.push_back(sample_log_likelihood(loc + delta, target_index, num_classes));
      minus.push_back(sample_log_likelihood(delta.neg_().add_(loc), target_index, num_classes));
    }
    // First the M/2 "+" samples, then their mirrors, as the reference orders them.
    const at::Tensor per_sample = at::cat({at::cat(plus), at::cat(minus)});  // [M, B, A]
    ctx->save_for_backward({loc, cov_factor, cov_diag});
    ctx->saved_data["eps_W"] = eps_W;
    ctx->saved_data["eps_D"] = eps_D;
    ctx->saved_data["target_index"] = target_index;
    ctx->saved_data["per_sample"] = per_sample;
    ctx->saved_data["num_classes"] = num_classes;
    ctx->saved_data["all_samples_weight"] = all_samples_weight;
    // The mean over examples and their annotations of each annotation's Monte-Carlo estimate.
    at::Tensor loss = -monte_carlo_log_likelihood(per_sample.flatten(1)).mean();
    if (all_samples_weight != 0.0) loss = loss - all_samples_weight * per_sample.mean();
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& loc = saved[0];
    const at::Tensor& cov_factor = saved[1];
    const at::Tensor& cov_diag = saved[2];
    const at::Tensor eps_W = ctx->saved_data["eps_W"].toTensor();
    const at::Tensor eps_D = ctx->saved_data["eps_D"].toTensor();
    const at::Tensor target_index = ctx->saved_data["target_index"].toTensor();
    const at::Tensor per_sample = ctx->saved_data["per_sample"].toTensor();
    const int64_t num_classes = ctx->saved_data["num_classes"].toInt();
    const double all_samples_weight = ctx->saved_data["all_samples_weight"].toDouble();

    const int64_t half = eps_W.size(0);
    const int64_t terms = per_sample.size(1) * per_sample.size(2);  // B x A
    // d loss / d l[m, b, a] = -grad * (softmax_m(l)[m, b, a] + all_samples_weight / M) / (B A).
    const at::Tensor coefficient =
        (per_sample.softmax(/*dim=*/0) + all_samples_weight / static_cast<double>(2 * half)) *
        (grad_outputs[0] / static_cast<double>(terms));
    const at::Tensor plus_coefficient = coefficient.slice(0, 0, half);
    const at::Tensor minus_coefficient = coefficient.slice(0, half, 2 * half);

    at::Tensor grad_loc = at::zeros_like(loc);
    at::Tensor grad_factor = at::zeros_like(cov_factor);
    at::Tensor grad_diag = at::zeros_like(cov_diag);
    const int64_t step = chunk_size(half);
    for (int64_t start = 0; start < half; start += step) {
      const int64_t stop = std::min(half, start + step);
      const at::Tensor chunk_W = eps_W.slice(0, start, stop);
      const at::Tensor chunk_D = eps_D.slice(0, start, stop);
      at::Tensor delta = low_rank_perturbation(cov_factor, cov_diag, chunk_W, chunk_D);
      at::Tensor grad_delta = logit_gradient(loc + delta, target_index,
                                             plus_coefficient.slice(0, start, stop), num_classes);
      const at::Tensor grad_minus =
          logit_gradient(delta.neg_().add_(loc), target_index,
                         minus_coefficient.slice(0, start, stop), num_classes);
      delta.reset();
      grad_loc += grad_delta.sum(/*dim=*/0);
      grad_loc += grad_minus.sum(/*dim=*/0);
      // eta = loc +/- (P eps_W + sqrt(D) eps_D): the perturbation sees grad_plus - grad_minus.
      grad_delta.sub_(grad_minus);  // [m, B, N]
      if (cov_factor.size(2) > 0) {
        // [B, N, m] x [B, m, R] -> [B, N, R]
        grad_factor += at::matmul(grad_delta.permute({1, 2, 0}), chunk_W.transpose(0, 1));
      }
      grad_diag += grad_delta.mul_(chunk_D).sum(/*dim=*/0);
    }
    grad_diag.mul_(0.5 / cov_diag.sqrt());  // d sqrt(D) / dD
    return {grad_loc,     grad_factor,  grad_diag,    at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// A label outside [0, C) would index out of range; one check, one message for both losses.
void check_label_range(const char* context, const at::Tensor& labels, int64_t num_classes) {
  if (labels.numel() == 0) return;
  // One reduction and one device synchronisation per step; the range only for the message.
  if (labels.ge(0).logical_and_(labels.lt(num_classes)).all().item<bool>()) return;
  const int64_t low = labels.min().item<int64_t>();
  const int64_t high = labels.max().item<int64_t>();
  TORCH_CHECK(low >= 0 && high < num_classes, context, ": target labels must lie in [0, ",
              num_classes, "), got values in [", low, ", ", high, "]");
}

// How many annotations per example a target holds: [B, *spatial] -> 0 (one, no axis for it),
// [B, A, *spatial] -> A >= 1. Any other shape is refused, naming `context`.
int64_t annotations_in(const char* context, const at::Tensor& target, int64_t batch,
                       at::IntArrayRef spatial) {
  std::vector<int64_t> one = {batch};
  one.insert(one.end(), spatial.begin(), spatial.end());
  std::vector<int64_t> several = {batch, target.defined() && target.dim() > 1 ? target.size(1) : 0};
  several.insert(several.end(), spatial.begin(), spatial.end());
  const bool is_one = target.defined() && target.sizes() == at::IntArrayRef(one);
  const bool is_several =
      target.defined() && target.sizes() == at::IntArrayRef(several) && several[1] >= 1;
  TORCH_CHECK(is_one || is_several, context,
              ": target must have shape [B, *spatial] = ", at::IntArrayRef(one),
              " or [B, A, *spatial] (A annotations per example), got ",
              target.defined() ? target.sizes() : at::IntArrayRef{});
  return is_one ? 0 : several[1];
}

// target [B, *spatial] (one annotation per example) or [B, A, *spatial] (A annotations each)
// -> [B, A, S] int64 labels, checked against the distribution.
at::Tensor target_index_for(const LowRankNormal& distribution, const at::Tensor& target) {
  const auto& event = distribution.event_shape();
  TORCH_CHECK(event.size() >= 2,
              "ssn_loss: the distribution needs an event shape (C, *spatial), got a flat event of "
              "N = ",
              distribution.event_size());
  const int64_t num_classes = event.front();
  TORCH_CHECK(num_classes >= 2, "ssn_loss: needs C >= 2 classes, got ", num_classes);
  const int64_t batch = distribution.batch_size();
  const int64_t annotations =
      annotations_in("ssn_loss", target, batch, at::IntArrayRef(event).slice(1));
  TORCH_CHECK(!at::isFloatingType(target.scalar_type()) && target.scalar_type() != at::kBool,
              "ssn_loss: target must hold integer class labels, got ", target.scalar_type());
  TORCH_CHECK(target.device() == distribution.loc().device(),
              "ssn_loss: target must be on the device of the distribution (",
              distribution.loc().device(), "), got ", target.device());
  const at::Tensor labels =
      target.to(at::kLong).reshape({batch, std::max<int64_t>(annotations, 1), -1});
  check_label_range("ssn_loss", labels, num_classes);
  return labels;
}

}  // namespace

at::Tensor monte_carlo_log_likelihood(const at::Tensor& sample_log_likelihood) {
  TORCH_CHECK(sample_log_likelihood.dim() == 2 && sample_log_likelihood.size(0) >= 1,
              "monte_carlo_log_likelihood: expected per-sample log-likelihoods [M, B] with M >= 1, "
              "got shape ",
              sample_log_likelihood.sizes());
  const double num_samples = static_cast<double>(sample_log_likelihood.size(0));
  return sample_log_likelihood.logsumexp(/*dim=*/0) - std::log(num_samples);
}

at::Tensor ssn_loss_from_noise(const LowRankNormal& distribution, const at::Tensor& target,
                               const at::Tensor& eps_W, const at::Tensor& eps_D,
                               double all_samples_weight) {
  TORCH_CHECK(std::isfinite(all_samples_weight) && all_samples_weight >= 0,
              "ssn_loss: all_samples_weight must be finite and >= 0, got ", all_samples_weight);
  const at::Tensor labels = target_index_for(distribution, target);
  TORCH_CHECK(eps_W.defined() && eps_W.dim() == 3 && eps_W.size(0) >= 1,
              "ssn_loss: eps_W must have shape [M/2, B, R] with M/2 >= 1, got ",
              eps_W.defined() ? eps_W.sizes() : at::IntArrayRef{});
  // Validated once here; the autograd function trusts the distribution and the noise.
  distribution.check_noise(eps_W, eps_D);
  return SsnLossFunction::apply(distribution.loc(), distribution.cov_factor(),
                                distribution.cov_diag(), eps_W, eps_D, labels,
                                distribution.num_classes(), all_samples_weight);
}

at::Tensor ssn_loss(const LowRankNormal& distribution, const at::Tensor& target,
                    int64_t num_mc_samples, c10::optional<at::Generator> generator,
                    double all_samples_weight, const BatchSlice& slice) {
  TORCH_CHECK(num_mc_samples >= 2 && num_mc_samples % 2 == 0,
              "ssn_loss: num_mc_samples must be even and >= 2 (antithetic pairs), got ",
              num_mc_samples);
  const int64_t half = num_mc_samples / 2;
  const auto options = distribution.loc().options();
  const int64_t batch = distribution.batch_size();
  const int64_t drawn = slice.global_batch > 0 ? slice.global_batch : batch;
  TORCH_CHECK(slice.offset >= 0 && slice.offset + batch <= drawn, "ssn_loss: rows ", slice.offset,
              " .. ", slice.offset + batch - 1, " are not in a batch of ", drawn);
  // On the generator's device (validation hands a CPU generator to a model on the GPU).
  at::Tensor eps_W = standard_normal({half, drawn, distribution.rank()}, generator, options);
  at::Tensor eps_D = standard_normal({half, drawn, distribution.event_size()}, generator, options);
  if (drawn != batch) {
    eps_W = eps_W.narrow(1, slice.offset, batch).contiguous();
    eps_D = eps_D.narrow(1, slice.offset, batch).contiguous();
  }
  return ssn_loss_from_noise(distribution, target, eps_W, eps_D, all_samples_weight);
}

at::Tensor cross_entropy_loss(const at::Tensor& logits, const at::Tensor& target) {
  TORCH_CHECK(logits.defined() && logits.dim() >= 3,
              "cross_entropy_loss: logits must have shape [B, C, *spatial], got ",
              logits.defined() ? logits.sizes() : at::IntArrayRef{});
  const int64_t batch = logits.size(0);
  const int64_t num_classes = logits.size(1);
  const int64_t annotations =
      annotations_in("cross_entropy_loss", target, batch, logits.sizes().slice(2));
  check_label_range("cross_entropy_loss", target, num_classes);
  if (annotations == 0) return torch::nn::functional::cross_entropy(logits, target.to(at::kLong));
  // The mean over the A annotations: each example's logits scored against each of them.
  std::vector<int64_t> repeated = {batch, annotations};
  repeated.insert(repeated.end(), logits.sizes().begin() + 1, logits.sizes().end());
  return torch::nn::functional::cross_entropy(logits.unsqueeze(1).expand(repeated).flatten(0, 1),
                                              target.to(at::kLong).flatten(0, 1));
}

SegmentationLoss::SegmentationLoss(LossOptions options) : options_(options) {
  if (options_.kind == LossKind::kStochasticMcIntegral) {
    TORCH_CHECK(options_.num_mc_samples >= 2 && options_.num_mc_samples % 2 == 0,
                "SegmentationLoss: num_mc_samples must be even and >= 2 (antithetic pairs), got ",
                options_.num_mc_samples);
  }
}

at::Tensor SegmentationLoss::operator()(const at::Tensor& mean_logits,
                                        const LowRankNormal* distribution, const at::Tensor& target,
                                        c10::optional<at::Generator> generator,
                                        const BatchSlice& slice) const {
  switch (options_.kind) {
    case LossKind::kCrossEntropy:
      return loss::cross_entropy_loss(mean_logits, target);
    case LossKind::kStochasticMcIntegral:
      TORCH_CHECK(distribution != nullptr,
                  "SegmentationLoss: the SSN loss needs the model's distribution, got none (is "
                  "the model deterministic?)");
      return ssn_loss(*distribution, target, options_.num_mc_samples, generator,
                      options_.all_samples_weight, slice);
  }
  TORCH_CHECK(false, "SegmentationLoss: unknown loss kind");
}

}  // namespace ssn::loss
