#include "ssn/toy/toy_problem.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "ssn/distributions/low_rank_normal.h"
#include "ssn/loss/segmentation_loss.h"

namespace ssn::toy {
namespace {

constexpr int64_t kFigureSamples = 8;
constexpr int64_t kCell = 12;  // pixels per cell of the figure
constexpr int kBackground = 200;

void check_options(const ToyOptions& options) {
  TORCH_CHECK(options.num_pixels >= 3 && options.num_pixels % 3 == 0,
              "toy: num_pixels must be a positive multiple of 3, got ", options.num_pixels);
  TORCH_CHECK(options.rank >= 1, "toy: rank of the low-rank model must be >= 1, got ",
              options.rank);
  TORCH_CHECK(options.mean_steps >= 0 && options.joint_steps >= 0,
              "toy: step counts must be >= 0, got ", options.mean_steps, " and ",
              options.joint_steps);
  TORCH_CHECK(options.learning_rate > 0, "toy: learning_rate must be > 0, got ",
              options.learning_rate);
  TORCH_CHECK(options.num_mc_samples >= 2 && options.num_mc_samples % 2 == 0,
              "toy: num_mc_samples must be even and >= 2, got ", options.num_mc_samples);
  TORCH_CHECK(options.num_eval_samples >= 1000,
              "toy: num_eval_samples must be >= 1000 for a usable estimate, got ",
              options.num_eval_samples);
}

}  // namespace

at::Tensor toy_targets(int64_t num_pixels) {
  TORCH_CHECK(num_pixels >= 3 && num_pixels % 3 == 0,
              "toy: num_pixels must be a positive multiple of 3, got ", num_pixels);
  const int64_t third = num_pixels / 3;
  at::Tensor targets = at::zeros({2, num_pixels}, at::kDouble);
  targets.slice(/*dim=*/1, 0, third).fill_(1);
  targets[0].slice(/*dim=*/0, third, 2 * third).fill_(1);
  return targets;
}

at::Tensor toy_log_likelihood(const at::Tensor& eta, const at::Tensor& targets) {
  TORCH_CHECK(eta.dim() == 2 && targets.dim() == 2 && eta.size(1) == targets.size(1),
              "toy: expected eta [M, S] and targets [T, S], got ", eta.sizes(), " and ",
              targets.sizes());
  // log Bernoulli(y; sigmoid(eta)) = logsigmoid((2y - 1) eta); summed over pixels: [M, T].
  const at::Tensor signs = (2 * targets - 1).to(eta.options());
  const at::Tensor per_sample =
      at::log_sigmoid(eta.unsqueeze(1) * signs.unsqueeze(0)).sum(/*dim=*/-1);
  return loss::monte_carlo_log_likelihood(per_sample);
}

ToyFit fit_toy_model(int64_t rank, const ToyOptions& options) {
  check_options(options);
  const int64_t pixels = options.num_pixels;
  const auto dtype = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor targets = toy_targets(pixels);
  at::Generator generator = at::detail::createCPUGenerator(options.seed);

  torch::Tensor mean = torch::zeros({1, pixels}, dtype).set_requires_grad(true);
  torch::Tensor log_diag = torch::zeros({1, pixels}, dtype).set_requires_grad(true);
  torch::Tensor factor =
      (0.1 * at::randn({1, pixels, rank}, generator, dtype)).set_requires_grad(true);
  std::vector<torch::Tensor> parameters = {mean, log_diag};
  if (rank > 0) {
    parameters.push_back(factor);
  }

  auto distribution = [&]() {
    return rank > 0 ? LowRankNormal(mean, factor, log_diag.exp())
                    : LowRankNormal::diagonal(mean, log_diag.exp());
  };
  auto run_phase = [&](std::vector<torch::Tensor> trained, int64_t steps) {
    torch::optim::Adam optimizer(trained, torch::optim::AdamOptions(options.learning_rate));
    for (int64_t step = 0; step < steps; ++step) {
      optimizer.zero_grad();
      const at::Tensor eta =
          distribution().rsample_antithetic(options.num_mc_samples, generator).squeeze(1);
      const at::Tensor loss = -toy_log_likelihood(eta, targets).mean();
      loss.backward();
      optimizer.step();
    }
  };
  run_phase({mean}, options.mean_steps);
  run_phase(parameters, options.joint_steps);

  torch::NoGradGuard no_grad;
  const LowRankNormal fitted = distribution();
  ToyFit fit;
  fit.rank = rank;
  const at::Tensor eta = fitted.rsample(options.num_eval_samples, generator).squeeze(1);
  fit.log_likelihood = toy_log_likelihood(eta, targets).mean().item<double>();
  fit.mean = fitted.mean()[0].detach().clone();
  fit.covariance = fitted.covariance()[0].detach().clone();
  fit.samples = fitted.rsample(kFigureSamples, generator).squeeze(1).sigmoid();
  return fit;
}

ToyResult run_toy_problem(const ToyOptions& options) {
  ToyResult result;
  result.targets = toy_targets(options.num_pixels);
  result.low_rank = fit_toy_model(options.rank, options);
  result.diagonal = fit_toy_model(/*rank=*/0, options);
  return result;
}

namespace {

// value in [-1, 1] -> blue (-1), white (0), red (+1).
std::array<uint8_t, 3> diverging(double value) {
  const double v = std::clamp(value, -1.0, 1.0);
  const auto shade = [](double t) { return static_cast<uint8_t>(std::lround(255 * (1 - t))); };
  if (v >= 0) return {255, shade(v), shade(v)};
  return {shade(-v), shade(-v), 255};
}

// probability in [0, 1] -> white (0) to black (1), "ink" for a foreground pixel.
std::array<uint8_t, 3> grey(double value) {
  const auto g = static_cast<uint8_t>(std::lround(255 * (1 - std::clamp(value, 0.0, 1.0))));
  return {g, g, g};
}

class Canvas {
 public:
  // A light grey background keeps white cells visible.
  Canvas(int64_t rows, int64_t cols)
      : pixels_(at::full({rows * kCell, cols * kCell, 3}, kBackground, at::kByte)) {}

  void cell(int64_t row, int64_t col, std::array<uint8_t, 3> colour) {
    auto block =
        pixels_.slice(0, row * kCell, (row + 1) * kCell).slice(1, col * kCell, (col + 1) * kCell);
    for (int channel = 0; channel < 3; ++channel) block.select(2, channel).fill_(colour[channel]);
  }
  at::Tensor image() const { return pixels_; }

 private:
  at::Tensor pixels_;
};

// Draws one model: the mean (one row), the covariance (S rows) and samples (K rows); returns the
// next free row.
int64_t draw_fit(Canvas& canvas, const ToyFit& fit, int64_t row) {
  const int64_t pixels = fit.mean.size(0);
  const double mean_scale = std::max(1e-12, fit.mean.abs().max().item<double>());
  for (int64_t s = 0; s < pixels; ++s) {
    canvas.cell(row, s, diverging(fit.mean[s].item<double>() / mean_scale));
  }
  row += 2;
  const double cov_scale = std::max(1e-12, fit.covariance.abs().max().item<double>());
  for (int64_t i = 0; i < pixels; ++i) {
    for (int64_t j = 0; j < pixels; ++j) {
      canvas.cell(row + i, j, diverging(fit.covariance[i][j].item<double>() / cov_scale));
    }
  }
  row += pixels + 1;
  for (int64_t k = 0; k < fit.samples.size(0); ++k) {
    for (int64_t s = 0; s < pixels; ++s) {
      canvas.cell(row + k, s, grey(fit.samples[k][s].item<double>()));
    }
  }
  return row + fit.samples.size(0);
}

}  // namespace

at::Tensor render_toy_figure(const ToyResult& result) {
  const int64_t pixels = result.targets.size(1);
  const int64_t samples = result.low_rank.samples.size(0);
  const int64_t panel_rows = 2 + pixels + 1 + samples;
  // Targets on top, then the two models side by side (low-rank left, diagonal right).
  Canvas canvas(result.targets.size(0) + 1 + panel_rows, 2 * pixels + 2);
  for (int64_t t = 0; t < result.targets.size(0); ++t) {
    for (int64_t s = 0; s < pixels; ++s) {
      canvas.cell(t, s, grey(result.targets[t][s].item<double>()));
    }
  }
  const int64_t top = result.targets.size(0) + 1;
  Canvas left(panel_rows, pixels);
  Canvas right(panel_rows, pixels);
  draw_fit(left, result.low_rank, 0);
  draw_fit(right, result.diagonal, 0);
  at::Tensor image = canvas.image();
  image.slice(0, top * kCell, (top + panel_rows) * kCell)
      .slice(1, 0, pixels * kCell)
      .copy_(left.image());
  image.slice(0, top * kCell, (top + panel_rows) * kCell)
      .slice(1, (pixels + 2) * kCell, (2 * pixels + 2) * kCell)
      .copy_(right.image());
  return image;
}

}  // namespace ssn::toy
