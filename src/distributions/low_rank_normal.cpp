#include "ssn/distributions/low_rank_normal.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

namespace ssn {
namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;  // log(2 pi)
// A dense covariance above this many events would need gigabytes; it exists for tests only.
constexpr int64_t kMaxDenseEventSize = 4096;

int64_t product(const std::vector<int64_t>& sizes) {
  return std::accumulate(sizes.begin(), sizes.end(), int64_t{1}, std::multiplies<int64_t>());
}

std::string shape_string(const std::vector<int64_t>& sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(sizes[i]);
  }
  return out + "]";
}

void check_same_kind(const at::Tensor& reference, const at::Tensor& other, const char* name) {
  TORCH_CHECK(other.scalar_type() == reference.scalar_type(), "LowRankNormal: ", name,
              " must have the dtype of loc (", reference.scalar_type(), "), got ",
              other.scalar_type());
  TORCH_CHECK(other.device() == reference.device(), "LowRankNormal: ", name,
              " must be on the device of loc (", reference.device(), "), got ", other.device());
}

}  // namespace

LowRankNormal::LowRankNormal(at::Tensor loc, at::Tensor cov_factor, at::Tensor cov_diag,
                             std::vector<int64_t> event_shape)
    : loc_(std::move(loc)),
      cov_factor_(std::move(cov_factor)),
      cov_diag_(std::move(cov_diag)),
      event_shape_(std::move(event_shape)) {
  TORCH_CHECK(loc_.defined() && loc_.dim() == 2, "LowRankNormal: loc must have shape [B, N], got ",
              loc_.defined() ? loc_.sizes() : at::IntArrayRef{});
  TORCH_CHECK(at::isFloatingType(loc_.scalar_type()),
              "LowRankNormal: loc must be a floating-point tensor, got ", loc_.scalar_type());
  const int64_t batch = loc_.size(0);
  const int64_t events = loc_.size(1);
  TORCH_CHECK(cov_factor_.defined() && cov_factor_.dim() == 3 && cov_factor_.size(0) == batch &&
                  cov_factor_.size(1) == events,
              "LowRankNormal: cov_factor must have shape [B, N, R] = [", batch, ", ", events,
              ", R], got ", cov_factor_.defined() ? cov_factor_.sizes() : at::IntArrayRef{});
  TORCH_CHECK(cov_diag_.defined() && cov_diag_.sizes() == loc_.sizes(),
              "LowRankNormal: cov_diag must have shape [B, N] = ", loc_.sizes(), ", got ",
              cov_diag_.defined() ? cov_diag_.sizes() : at::IntArrayRef{});
  check_same_kind(loc_, cov_factor_, "cov_factor");
  check_same_kind(loc_, cov_diag_, "cov_diag");
  // One reduction (and one device sync) buys a clear message instead of NaN samples later: NaN
  // fails both comparisons, +inf the second.
  if (cov_diag_.numel() > 0 &&
      !cov_diag_.gt(0)
           .logical_and_(cov_diag_.lt(std::numeric_limits<double>::infinity()))
           .all()
           .item<bool>()) {
    if (!(cov_diag_ > 0).all().item<bool>()) {
      throw InvalidCovariance(
          c10::str("LowRankNormal: cov_diag must be > 0 and finite everywhere, got minimum ",
                   cov_diag_.min().item<double>(), " (NaN counts as invalid)"));
    }
    throw InvalidCovariance(
        "LowRankNormal: cov_diag must be > 0 and finite everywhere, got a non-finite value");
  }
  if (event_shape_.empty()) {
    event_shape_ = {events};
  }
  TORCH_CHECK(product(event_shape_) == events, "LowRankNormal: event_shape ",
              shape_string(event_shape_), " must have N = ", events, " elements, got ",
              product(event_shape_));
}

LowRankNormal LowRankNormal::diagonal(at::Tensor loc, at::Tensor cov_diag,
                                      std::vector<int64_t> event_shape) {
  TORCH_CHECK(loc.defined() && loc.dim() == 2,
              "LowRankNormal::diagonal: loc must have shape [B, N], got ",
              loc.defined() ? loc.sizes() : at::IntArrayRef{});
  at::Tensor no_factor = at::zeros({loc.size(0), loc.size(1), 0}, loc.options());
  return LowRankNormal(std::move(loc), std::move(no_factor), std::move(cov_diag),
                       std::move(event_shape));
}

at::Tensor LowRankNormal::variance() const {
  return cov_factor_.pow(2).sum(/*dim=*/-1) + cov_diag_;
}

at::Tensor LowRankNormal::covariance() const {
  TORCH_CHECK(event_size() <= kMaxDenseEventSize,
              "LowRankNormal::covariance: the dense matrix is only for N <= ", kMaxDenseEventSize,
              ", got N = ", event_size());
  return at::matmul(cov_factor_, cov_factor_.transpose(1, 2)) + at::diag_embed(cov_diag_);
}

void LowRankNormal::check_noise(const at::Tensor& eps_W, const at::Tensor& eps_D) const {
  TORCH_CHECK(eps_W.defined() && eps_W.dim() == 3 && eps_W.size(1) == batch_size() &&
                  eps_W.size(2) == rank(),
              "LowRankNormal: eps_W must have shape [M, B, R] = [M, ", batch_size(), ", ", rank(),
              "], got ", eps_W.defined() ? eps_W.sizes() : at::IntArrayRef{});
  TORCH_CHECK(eps_D.defined() && eps_D.dim() == 3 && eps_D.size(0) == eps_W.size(0) &&
                  eps_D.size(1) == batch_size() && eps_D.size(2) == event_size(),
              "LowRankNormal: eps_D must have shape [M, B, N] = [", eps_W.size(0), ", ",
              batch_size(), ", ", event_size(), "], got ",
              eps_D.defined() ? eps_D.sizes() : at::IntArrayRef{});
  check_same_kind(loc_, eps_W, "eps_W");
  check_same_kind(loc_, eps_D, "eps_D");
}

at::Tensor low_rank_perturbation(const at::Tensor& cov_factor, const at::Tensor& cov_diag,
                                 const at::Tensor& eps_W, const at::Tensor& eps_D) {
  at::Tensor delta = cov_diag.sqrt() * eps_D;  // [M, B, N]
  if (cov_factor.size(2) > 0) {
    // [B, M, R] x [B, R, N] -> [B, M, N], then back to sample-major [M, B, N].
    delta.add_(at::matmul(eps_W.transpose(0, 1), cov_factor.transpose(1, 2)).transpose(0, 1));
  }
  return delta;
}

at::Tensor LowRankNormal::perturbation(const at::Tensor& eps_W, const at::Tensor& eps_D,
                                       const SamplingControls& controls) const {
  check_noise(eps_W, eps_D);
  TORCH_CHECK(std::isfinite(controls.temperature) && controls.temperature >= 0,
              "LowRankNormal: temperature must be finite and >= 0, got ", controls.temperature);
  at::Tensor low_rank_noise = eps_W;  // [M, B, R]
  if (controls.rank_weights.defined()) {
    const auto& w = controls.rank_weights;
    TORCH_CHECK(w.dim() == 1 && w.size(0) == rank(),
                "LowRankNormal: rank_weights must have R = ", rank(),
                " entries (one per rank), got shape ", w.sizes());
    TORCH_CHECK(at::isfinite(w).all().item<bool>(), "LowRankNormal: rank_weights must be finite");
    if (rank() > 0) low_rank_noise = low_rank_noise * w.to(loc_.options());
  }
  at::Tensor delta = low_rank_perturbation(cov_factor_, cov_diag_, low_rank_noise, eps_D);
  if (controls.class_weights.defined()) {
    const auto& w = controls.class_weights;
    TORCH_CHECK(at::isfinite(w).all().item<bool>(), "LowRankNormal: class_weights must be finite");
    TORCH_CHECK(w.dim() == 1 && w.size(0) == num_classes(),
                "LowRankNormal: class_weights must have C = ", num_classes(),
                " entries (one per class of the event shape ", shape_string(event_shape_),
                "), got shape ", w.sizes());
    const int64_t samples = delta.size(0);
    delta = (delta.reshape({samples, batch_size(), num_classes(), -1}) *
             w.to(loc_.options()).view({1, 1, -1, 1}))
                .reshape({samples, batch_size(), event_size()});
  }
  if (controls.temperature != 1.0) {
    delta = delta * controls.temperature;
  }
  return delta;
}

at::Tensor LowRankNormal::rsample_from_noise(const at::Tensor& eps_W, const at::Tensor& eps_D,
                                             const SamplingControls& controls) const {
  return loc_.unsqueeze(0) + perturbation(eps_W, eps_D, controls);
}

at::Tensor standard_normal(at::IntArrayRef shape, const c10::optional<at::Generator>& generator,
                           const at::TensorOptions& options) {
  if (generator.has_value() && generator->device().type() != options.device().type()) {
    return at::randn(shape, generator, options.device(generator->device())).to(options.device());
  }
  return at::randn(shape, generator, options);
}

at::Tensor LowRankNormal::rsample(int64_t num_samples, c10::optional<at::Generator> generator,
                                  const SamplingControls& controls) const {
  TORCH_CHECK(num_samples >= 1, "LowRankNormal::rsample: num_samples must be >= 1, got ",
              num_samples);
  at::Tensor eps_W =
      standard_normal({num_samples, batch_size(), rank()}, generator, loc_.options());
  at::Tensor eps_D =
      standard_normal({num_samples, batch_size(), event_size()}, generator, loc_.options());
  return rsample_from_noise(eps_W, eps_D, controls);
}

at::Tensor LowRankNormal::rsample_antithetic(int64_t num_samples,
                                             c10::optional<at::Generator> generator,
                                             const SamplingControls& controls) const {
  TORCH_CHECK(num_samples >= 2 && num_samples % 2 == 0,
              "LowRankNormal::rsample_antithetic: num_samples must be even and >= 2 (pairs of "
              "mirrored draws), got ",
              num_samples);
  const int64_t half = num_samples / 2;
  at::Tensor eps_W = standard_normal({half, batch_size(), rank()}, generator, loc_.options());
  at::Tensor eps_D = standard_normal({half, batch_size(), event_size()}, generator, loc_.options());
  at::Tensor delta = perturbation(eps_W, eps_D, controls);
  at::Tensor mean = loc_.unsqueeze(0);
  return at::cat({mean + delta, mean - delta}, /*dim=*/0);
}

LowRankNormal::Capacitance LowRankNormal::capacitance() const {
  Capacitance result;
  const at::Tensor log_det_diag = cov_diag_.log().sum(/*dim=*/-1);  // [B]
  if (rank() == 0) {
    result.log_det = log_det_diag;
    return result;
  }
  // K = I + P^T D^-1 P, [B, R, R]; det(P P^T + D) = det(K) det(D) (matrix determinant lemma).
  const at::Tensor scaled = cov_factor_ / cov_diag_.sqrt().unsqueeze(-1);
  at::Tensor capacitance = at::matmul(scaled.transpose(1, 2), scaled);
  capacitance.diagonal(/*offset=*/0, /*dim1=*/-2, /*dim2=*/-1).add_(1);
  at::Tensor cholesky, info;
  std::tie(cholesky, info) = at::linalg_cholesky_ex(capacitance, /*upper=*/false,
                                                    /*check_errors=*/false);
  TORCH_CHECK(info.eq(0).all().item<bool>(),
              "LowRankNormal: the capacitance matrix I + P^T D^-1 P is not positive definite "
              "(non-finite or numerically singular covariance); log_prob and entropy need it, "
              "sampling does not");
  result.cholesky = cholesky;
  result.log_det =
      2 * cholesky.diagonal(/*offset=*/0, /*dim1=*/-2, /*dim2=*/-1).log().sum(-1) + log_det_diag;
  return result;
}

at::Tensor LowRankNormal::log_prob(const at::Tensor& value) const {
  TORCH_CHECK(
      value.defined() && (value.dim() == 2 || value.dim() == 3) && value.size(-2) == batch_size() &&
          value.size(-1) == event_size(),
      "LowRankNormal::log_prob: value must have shape [B, N] or [M, B, N] with B = ", batch_size(),
      " and N = ", event_size(), ", got ", value.defined() ? value.sizes() : at::IntArrayRef{});
  check_same_kind(loc_, value, "value");
  const bool single = value.dim() == 2;
  const at::Tensor diff = single ? (value - loc_).unsqueeze(0) : value - loc_;  // [M, B, N]
  const at::Tensor weighted = diff / cov_diag_;                                 // D^-1 x
  at::Tensor mahalanobis = (diff * weighted).sum(/*dim=*/-1);                   // [M, B]
  const Capacitance cap = capacitance();
  if (rank() > 0) {
    // Woodbury: x^T (P P^T + D)^-1 x = x^T D^-1 x - |L^-1 P^T D^-1 x|^2 with K = L L^T.
    const at::Tensor projected =
        at::matmul(cov_factor_.transpose(1, 2), weighted.permute({1, 2, 0}));  // [B, R, M]
    const at::Tensor solved = at::linalg_solve_triangular(cap.cholesky, projected, /*upper=*/false);
    mahalanobis = mahalanobis - solved.pow(2).sum(/*dim=*/1).transpose(0, 1);
  }
  const at::Tensor result =
      -0.5 * (mahalanobis + cap.log_det.unsqueeze(0) + static_cast<double>(event_size()) * kLog2Pi);
  return single ? result.squeeze(0) : result;
}

at::Tensor LowRankNormal::entropy() const {
  const Capacitance cap = capacitance();
  return 0.5 * static_cast<double>(event_size()) * (1.0 + kLog2Pi) + 0.5 * cap.log_det;
}

at::Tensor LowRankNormal::to_event_shape(const at::Tensor& flat) const {
  TORCH_CHECK(flat.dim() >= 1 && flat.size(-1) == event_size(),
              "LowRankNormal::to_event_shape: the last dimension must be N = ", event_size(),
              ", got shape ", flat.sizes());
  std::vector<int64_t> shape(flat.sizes().begin(), flat.sizes().end() - 1);
  shape.insert(shape.end(), event_shape_.begin(), event_shape_.end());
  return flat.reshape(shape);
}

LowRankNormal distribution_from_maps(const at::Tensor& mean, const at::Tensor& cov_diag,
                                     const at::Tensor& cov_factor) {
  TORCH_CHECK(mean.defined() && mean.dim() >= 3,
              "distribution_from_maps: mean must have shape [B, C, *spatial], got ",
              mean.defined() ? mean.sizes() : at::IntArrayRef{});
  TORCH_CHECK(cov_diag.defined() && cov_diag.sizes() == mean.sizes(),
              "distribution_from_maps: cov_diag must have the shape of mean ", mean.sizes(),
              ", got ", cov_diag.defined() ? cov_diag.sizes() : at::IntArrayRef{});
  const int64_t batch = mean.size(0);
  const int64_t classes = mean.size(1);
  TORCH_CHECK(
      cov_factor.defined() && cov_factor.dim() == mean.dim() && cov_factor.size(0) == batch &&
          cov_factor.size(1) % classes == 0 && cov_factor.sizes().slice(2) == mean.sizes().slice(2),
      "distribution_from_maps: cov_factor must have shape [B, C*R, *spatial] with B = ", batch,
      ", C = ", classes, " and spatial ", mean.sizes().slice(2), ", got ",
      cov_factor.defined() ? cov_factor.sizes() : at::IntArrayRef{});
  const int64_t rank = cov_factor.size(1) / classes;
  const int64_t events = mean.numel() / std::max<int64_t>(batch, 1);
  // [B, R*C, *sp] -> [B, R, C*S] -> [B, N, R]: channel k = r*C + c lands on rank r of class c.
  const at::Tensor factor =
      rank > 0 ? cov_factor.reshape({batch, rank, events}).transpose(1, 2).contiguous()
               : at::zeros({batch, events, 0}, mean.options());
  std::vector<int64_t> event_shape(mean.sizes().begin() + 1, mean.sizes().end());
  return LowRankNormal(mean.reshape({batch, events}), factor, cov_diag.reshape({batch, events}),
                       std::move(event_shape));
}

at::Tensor class_argmax(const at::Tensor& logits, int64_t dim) {
  const int64_t classes = logits.size(dim);
  TORCH_CHECK(classes >= 1 && classes <= 256, "class_argmax: expected 1 to 256 classes, got ",
              classes);
  at::Tensor best = logits.select(dim, 0);
  at::Tensor index = at::zeros(best.sizes(), logits.options().dtype(at::kByte));
  for (int64_t c = 1; c < classes; ++c) {
    const at::Tensor candidate = logits.select(dim, c);
    const at::Tensor larger = candidate > best;  // strict: the first maximum wins, as argmax
    index.masked_fill_(larger, static_cast<int64_t>(c));
    best = at::maximum(best, candidate);
  }
  return index;
}

}  // namespace ssn
