#pragma once

// A Gaussian over a whole logit map with low-rank plus diagonal covariance,
//   eta ~ N(loc, P P^T + D),
// the distribution at the heart of Stochastic Segmentation Networks (Monteiro et al., 2020).
//
// Shapes use fixed letters: B batch, C classes, S pixels/voxels, N = C*S event size, R rank,
// M Monte-Carlo samples. An event is flattened class-major (index = c*S + s).

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ssn {

/// Post-hoc controls applied to the noise of a sample (not to the mean): the paper's temperature
/// and per-class sweeps. The default leaves samples untouched.
struct SamplingControls {
  /// Multiplies the whole perturbation eta - loc; 0 returns the mean.
  double temperature = 1.0;
  /// [C] or undefined: multiplies the perturbation of every logit of class c by class_weights[c].
  at::Tensor class_weights;
  /// [R] or undefined: multiplies the low-rank noise eps_W[r] by rank_weights[r].
  at::Tensor rank_weights;

  /// A copy whose weights are on `device` (that of the distribution they steer).
  SamplingControls to(at::Device device) const {
    SamplingControls moved = *this;
    if (moved.class_weights.defined()) moved.class_weights = moved.class_weights.to(device);
    if (moved.rank_weights.defined()) moved.rank_weights = moved.rank_weights.to(device);
    return moved;
  }
};

/// Thrown by LowRankNormal when cov_diag is not > 0 and finite everywhere: in training, the sign
/// of a covariance that overflowed (a step to skip) rather than of a programming error.
class InvalidCovariance : public c10::Error {
 public:
  explicit InvalidCovariance(const std::string& message)
      : c10::Error(c10::SourceLocation{"LowRankNormal", __FILE__, static_cast<uint32_t>(__LINE__)},
                   message) {}
};

class LowRankNormal {
 public:
  /// loc [B, N], cov_factor [B, N, R] (R may be 0: independent normals), cov_diag [B, N] > 0.
  /// event_shape is (C, *spatial) with product N; empty means the flat event (N).
  LowRankNormal(at::Tensor loc, at::Tensor cov_factor, at::Tensor cov_diag,
                std::vector<int64_t> event_shape = {});

  /// Independent normals (the paper's "diagonal" SSN): loc [B, N], cov_diag [B, N].
  static LowRankNormal diagonal(at::Tensor loc, at::Tensor cov_diag,
                                std::vector<int64_t> event_shape = {});

  int64_t batch_size() const { return loc_.size(0); }
  int64_t event_size() const { return loc_.size(1); }
  int64_t rank() const { return cov_factor_.size(2); }
  /// (C, *spatial), or (N) when none was given.
  const std::vector<int64_t>& event_shape() const { return event_shape_; }
  /// C of the event shape (1 for a flat event).
  int64_t num_classes() const { return event_shape_.front(); }

  /// [B, N]
  const at::Tensor& loc() const { return loc_; }
  /// [B, N, R]
  const at::Tensor& cov_factor() const { return cov_factor_; }
  /// [B, N]
  const at::Tensor& cov_diag() const { return cov_diag_; }

  /// [B, N]: the mean, equal to loc.
  const at::Tensor& mean() const { return loc_; }
  /// [B, N]: diag(P P^T) + D.
  at::Tensor variance() const;
  /// [B, N, N]: the dense covariance P P^T + D. Only for small N (tests, the toy problem).
  at::Tensor covariance() const;

  /// [M, B, N]: M reparameterised draws loc + P eps_W + sqrt(D) eps_D with fresh standard noise.
  at::Tensor rsample(int64_t num_samples, c10::optional<at::Generator> generator = c10::nullopt,
                     const SamplingControls& controls = {}) const;
  /// [M, B, N]: antithetic draws, M even: the M/2 draws loc + delta, then their mirrors loc -
  /// delta, so that every pair averages exactly to loc (the reference's variance reduction).
  at::Tensor rsample_antithetic(int64_t num_samples,
                                c10::optional<at::Generator> generator = c10::nullopt,
                                const SamplingControls& controls = {}) const;
  /// [M, B, N] from given noise eps_W [M, B, R] and eps_D [M, B, N].
  at::Tensor rsample_from_noise(const at::Tensor& eps_W, const at::Tensor& eps_D,
                                const SamplingControls& controls = {}) const;
  /// [M, B, N]: the perturbation P eps_W + sqrt(D) eps_D (samples minus loc) for given noise.
  at::Tensor perturbation(const at::Tensor& eps_W, const at::Tensor& eps_D,
                          const SamplingControls& controls = {}) const;

  /// Checks noise for this distribution: eps_W [M, B, R], eps_D [M, B, N], dtype and device of
  /// loc; throws a c10::Error that names the tensor otherwise.
  void check_noise(const at::Tensor& eps_W, const at::Tensor& eps_D) const;

  /// value [B, N] or [M, B, N] -> [B] or [M, B]. Woodbury identity with the R x R capacitance
  /// I + P^T D^-1 P; an N x N matrix is never formed.
  at::Tensor log_prob(const at::Tensor& value) const;
  /// [B]: differential entropy, through the same capacitance determinant.
  at::Tensor entropy() const;

  /// [..., N] -> [..., C, *spatial].
  at::Tensor to_event_shape(const at::Tensor& flat) const;

 private:
  struct Capacitance {
    at::Tensor cholesky;  // [B, R, R], lower triangular
    at::Tensor log_det;   // [B]: log det(P P^T + D)
  };
  Capacitance capacitance() const;

  at::Tensor loc_;
  at::Tensor cov_factor_;
  at::Tensor cov_diag_;
  std::vector<int64_t> event_shape_;
};

/// P eps_W + sqrt(D) eps_D for cov_factor [B, N, R], cov_diag [B, N], eps_W [M, B, R],
/// eps_D [M, B, N] -> [M, B, N], without checks: the kernel of LowRankNormal::perturbation, for
/// hot loops over parameters that a LowRankNormal has already validated (the SSN loss).
at::Tensor low_rank_perturbation(const at::Tensor& cov_factor, const at::Tensor& cov_diag,
                                 const at::Tensor& eps_W, const at::Tensor& eps_D);

/// Standard normal noise of `shape` for tensors of `options`, drawn on the generator's device and
/// moved to options' device: a CPU generator (sample, evaluate and calibrate seed one per case)
/// gives the same noise whatever device the distribution is on. Without a generator: the default
/// one of options' device.
at::Tensor standard_normal(at::IntArrayRef shape, const c10::optional<at::Generator>& generator,
                           const at::TensorOptions& options);

/// The index of the largest logit along `dim` (the class dimension), uint8, the first one on
/// ties: what argmax gives, computed with element-wise comparisons over the C slices. ATen's
/// argmax over a strided middle dimension reduces each output element on its own and was most
/// of the time of sampling-heavy code (calibration, evaluation). C must be at most 256.
at::Tensor class_argmax(const at::Tensor& logits, int64_t dim);

/// The reference's map layout -> the distribution over flattened logits: mean [B, C, *spatial],
/// cov_diag [B, C, *spatial], cov_factor [B, C*R, *spatial] with rank-major channels (channel k is
/// rank k / C of class k % C; C*R = 0 for a diagonal model). Event shape (C, *spatial).
LowRankNormal distribution_from_maps(const at::Tensor& mean, const at::Tensor& cov_diag,
                                     const at::Tensor& cov_factor);

}  // namespace ssn
