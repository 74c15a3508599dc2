#include "ssn/loss/segmentation_loss.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "golden.h"
#include "ssn/runtime/memory_tracker.h"

namespace ssn::loss {
namespace {

using ssn::testing::error_of;

using ::testing::HasSubstr;
using testing::load_golden;
using testing::max_relative_error;
using testing::to_tensor;

std::vector<int64_t> event_shape_of(const at::Tensor& mean) {
  return std::vector<int64_t>(mean.sizes().begin() + 1, mean.sizes().end());
}

// The loss written as plainly as the reference: samples, cross-entropy, logsumexp; gradients by
// autograd. An independent check of the chunked analytic backward pass.
torch::Tensor plain_ssn_loss(const torch::Tensor& loc, const torch::Tensor& factor,
                             const torch::Tensor& diag, const torch::Tensor& target,
                             const torch::Tensor& eps_W, const torch::Tensor& eps_D,
                             int64_t classes, double all_samples_weight = 0.0) {
  const auto delta =
      torch::einsum("bnr,mbr->mbn", {factor, eps_W}) + diag.sqrt().unsqueeze(0) * eps_D;
  const auto samples = torch::cat({loc + delta, loc - delta});  // [M, B, N]
  const int64_t m = samples.size(0), b = samples.size(1);
  const auto logits = samples.reshape({m * b, classes, -1});
  const auto labels = target.reshape({1, b, -1}).expand({m, b, -1}).reshape({m * b, -1});
  const auto log_prob =
      -torch::nn::functional::cross_entropy(
           logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
           .view({m, b, -1});
  return -(torch::logsumexp(log_prob.sum(-1), 0) - std::log(double(m))).mean() -
         all_samples_weight * log_prob.sum(-1).mean();
}

class GoldenSsnLoss : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(GoldenSsnLoss, LossAndGradientsMatchEveryCase) {
  const at::ScalarType dtype = GetParam();
  const double tolerance = dtype == at::kDouble ? 1e-9 : 1e-4;
  const auto golden = load_golden("ssn_loss.json");
  ASSERT_FALSE(golden["cases"].empty());
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE("case with mc_samples " + std::to_string(c["mc_samples"].get<int>()));
    const at::Tensor mean_maps = to_tensor(c["mean"], dtype);  // [B, C, *sp]
    const int64_t batch = mean_maps.size(0);
    torch::Tensor loc = mean_maps.reshape({batch, -1}).set_requires_grad(true);
    torch::Tensor factor = to_tensor(c["cov_factor"], dtype).set_requires_grad(true);
    torch::Tensor diag = to_tensor(c["cov_diag"], dtype).set_requires_grad(true);
    const LowRankNormal dist(loc, factor, diag, event_shape_of(mean_maps));
    const at::Tensor target = to_tensor(c["target"], at::kLong);
    const at::Tensor eps_W = to_tensor(c["eps_W"], dtype);
    const at::Tensor eps_D = to_tensor(c["eps_D"], dtype);
    ASSERT_EQ(2 * eps_W.size(0), c["mc_samples"].get<int64_t>());

    const torch::Tensor loss = ssn_loss_from_noise(dist, target, eps_W, eps_D);
    loss.backward();
    const double expected = c["loss"].get<double>();
    EXPECT_LT(std::abs(loss.item<double>() - expected) / std::abs(expected), tolerance);
    // Gradients are compared relative to their largest entry (some entries are ~0).
    const at::Tensor grad_mean = to_tensor(c["grad_mean"]).reshape({batch, -1});
    const at::Tensor grad_factor = to_tensor(c["grad_cov_factor"]);
    const at::Tensor grad_diag = to_tensor(c["grad_cov_diag"]);
    EXPECT_LT(max_relative_error(loc.grad(), grad_mean, grad_mean.abs().max().item<double>()),
              tolerance);
    EXPECT_LT(
        max_relative_error(factor.grad(), grad_factor, grad_factor.abs().max().item<double>()),
        tolerance);
    EXPECT_LT(max_relative_error(diag.grad(), grad_diag, grad_diag.abs().max().item<double>()),
              tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GoldenSsnLoss, ::testing::Values(at::kDouble, at::kFloat),
                         [](const auto& info) {
                           return info.param == at::kDouble ? std::string("Float64")
                                                            : std::string("Float32");
                         });

TEST(SsnLoss, AnalyticBackwardMatchesAutogradThroughThePlainFormula) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  for (int64_t rank : {0, 3}) {
    for (int64_t half : {1, 5, 9}) {      // one chunk, several chunks, a ragged last chunk
      for (double weight : {0.0, 0.3}) {  // the paper's loss; every sample paying too
        SCOPED_TRACE("rank " + std::to_string(rank) + ", M/2 " + std::to_string(half) +
                     ", all_samples_weight " + std::to_string(weight));
        const int64_t batch = 2, classes = 3, pixels = 10, events = classes * pixels;
        const at::Tensor loc0 = at::randn({batch, events}, gen, opts);
        const at::Tensor factor0 = 0.5 * at::randn({batch, events, rank}, gen, opts);
        const at::Tensor diag0 = at::rand({batch, events}, gen, opts) + 0.1;
        const at::Tensor target = at::randint(classes, {batch, pixels}, gen, opts.dtype(at::kLong));
        const at::Tensor eps_W = at::randn({half, batch, rank}, gen, opts);
        const at::Tensor eps_D = at::randn({half, batch, events}, gen, opts);

        auto loc = loc0.clone().set_requires_grad(true);
        auto factor = factor0.clone().set_requires_grad(true);
        auto diag = diag0.clone().set_requires_grad(true);
        const auto ours = ssn_loss_from_noise(LowRankNormal(loc, factor, diag, {classes, pixels}),
                                              target, eps_W, eps_D, weight);
        (3.0 * ours).backward();  // a non-unit upstream gradient

        auto loc_ref = loc0.clone().set_requires_grad(true);
        auto factor_ref = factor0.clone().set_requires_grad(true);
        auto diag_ref = diag0.clone().set_requires_grad(true);
        const auto reference =
            plain_ssn_loss(loc_ref, factor_ref, diag_ref, target, eps_W, eps_D, classes, weight);
        (3.0 * reference).backward();

        EXPECT_NEAR(ours.item<double>(), reference.item<double>(), 1e-12);
        EXPECT_TRUE(at::allclose(loc.grad(), loc_ref.grad(), 1e-10, 1e-12));
        EXPECT_TRUE(at::allclose(diag.grad(), diag_ref.grad(), 1e-10, 1e-12));
        if (rank > 0) {
          EXPECT_TRUE(at::allclose(factor.grad(), factor_ref.grad(), 1e-10, 1e-12));
        }
      }
    }
  }
}

TEST(SsnLoss, SeveralAnnotationsPerExampleCostTheMeanOfTheirLossesFromTheSameSamples) {
  // target [B, A, *spatial]: each annotation's Monte-Carlo likelihood from the same samples,
  // averaged; gradients those of the average of the plain losses.
  at::Generator gen = at::detail::createCPUGenerator(8);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  for (int64_t rank : {0, 3}) {
    for (double weight : {0.0, 0.3}) {
      SCOPED_TRACE("rank " + std::to_string(rank) + ", all_samples_weight " +
                   std::to_string(weight));
      const int64_t batch = 2, annotations = 3, classes = 2, height = 2, width = 5;
      const int64_t events = classes * height * width, half = 5;
      const at::Tensor loc0 = at::randn({batch, events}, gen, opts);
      const at::Tensor factor0 = 0.5 * at::randn({batch, events, rank}, gen, opts);
      const at::Tensor diag0 = at::rand({batch, events}, gen, opts) + 0.1;
      const at::Tensor target =
          at::randint(classes, {batch, annotations, height, width}, gen, opts.dtype(at::kLong));
      const at::Tensor eps_W = at::randn({half, batch, rank}, gen, opts);
      const at::Tensor eps_D = at::randn({half, batch, events}, gen, opts);

      auto loc = loc0.clone().set_requires_grad(true);
      auto factor = factor0.clone().set_requires_grad(true);
      auto diag = diag0.clone().set_requires_grad(true);
      const auto ours = ssn_loss_from_noise(
          LowRankNormal(loc, factor, diag, {classes, height, width}), target, eps_W, eps_D, weight);
      (2.0 * ours).backward();

      auto loc_ref = loc0.clone().set_requires_grad(true);
      auto factor_ref = factor0.clone().set_requires_grad(true);
      auto diag_ref = diag0.clone().set_requires_grad(true);
      at::Tensor reference = at::zeros({}, opts);
      for (int64_t a = 0; a < annotations; ++a) {
        reference = reference + plain_ssn_loss(loc_ref, factor_ref, diag_ref, target.select(1, a),
                                               eps_W, eps_D, classes, weight);
      }
      reference = reference / static_cast<double>(annotations);
      (2.0 * reference).backward();

      EXPECT_NEAR(ours.item<double>(), reference.item<double>(), 1e-12);
      EXPECT_TRUE(at::allclose(loc.grad(), loc_ref.grad(), 1e-10, 1e-12));
      EXPECT_TRUE(at::allclose(diag.grad(), diag_ref.grad(), 1e-10, 1e-12));
      if (rank > 0) {
        EXPECT_TRUE(at::allclose(factor.grad(), factor_ref.grad(), 1e-10, 1e-12));
      }
      // One annotation given as [B, 1, *spatial] is the same loss as [B, *spatial].
      const LowRankNormal dist(loc0, factor0, diag0, {classes, height, width});
      EXPECT_NEAR(
          ssn_loss_from_noise(dist, target.narrow(1, 1, 1), eps_W, eps_D, weight).item<double>(),
          ssn_loss_from_noise(dist, target.select(1, 1), eps_W, eps_D, weight).item<double>(),
          1e-12);
    }
  }
}

TEST(SsnLoss, WithFreshSamplesIsReproducibleForAGivenGenerator) {
  const at::Tensor loc = at::randn({2, 2 * 16}, at::kDouble);
  const LowRankNormal dist(loc, at::randn({2, 32, 2}, at::kDouble),
                           at::rand({2, 32}, at::kDouble) + 0.1, {2, 4, 4});
  const at::Tensor target = at::randint(2, {2, 4, 4}, at::kLong);
  at::Generator first = at::detail::createCPUGenerator(42);
  at::Generator second = at::detail::createCPUGenerator(42);
  EXPECT_EQ(ssn_loss(dist, target, 10, first).item<double>(),
            ssn_loss(dist, target, 10, second).item<double>());
}

TEST(SsnLoss, ZeroCovarianceGivesTheCrossEntropyOfTheMeanSummedOverPixels) {
  // With P = 0 and D -> 0 every sample is the mean: -log p(y) = sum_s CE_s, averaged over B.
  const at::Tensor mean = at::randn({2, 3, 4, 5}, at::kDouble);
  const at::Tensor target = at::randint(3, {2, 4, 5}, at::kLong);
  const LowRankNormal dist(mean.reshape({2, -1}), at::zeros({2, 60, 1}, at::kDouble),
                           at::full({2, 60}, 1e-30, at::kDouble), {3, 4, 5});
  const double per_pixel = loss::cross_entropy_loss(mean, target).item<double>();
  EXPECT_NEAR(ssn_loss(dist, target, 4).item<double>(), per_pixel * 20, 1e-9);
}

// Peak bytes of forward + backward beyond the inputs and the gradients autograd must return, as a
// multiple of the M x B x N logits the loss has to form.
double peak_working_memory_ratio(bool plain) {
  const int64_t batch = 2, classes = 2, pixels = 32 * 32, rank = 10, samples = 20;
  const int64_t events = classes * pixels;
  auto loc = torch::randn({batch, events}).set_requires_grad(true);
  auto factor = torch::randn({batch, events, rank}).set_requires_grad(true);
  auto diag = (torch::rand({batch, events}) + 0.1).set_requires_grad(true);
  const auto target = torch::randint(classes, {batch, pixels}, torch::kLong);
  const auto eps_W = torch::randn({samples / 2, batch, rank});
  const auto eps_D = torch::randn({samples / 2, batch, events});
  const double logits_bytes = double(samples * batch * events) * sizeof(float);
  const double gradient_bytes = double(loc.numel() + factor.numel() + diag.numel()) * sizeof(float);
  runtime::CpuMemoryTracker tracker;
  {
    const auto loss = plain
                          ? plain_ssn_loss(loc, factor, diag, target, eps_W, eps_D, classes)
                          : ssn_loss_from_noise(LowRankNormal(loc, factor, diag, {classes, pixels}),
                                                target, eps_W, eps_D);
    loss.backward();
  }
  return (double(tracker.peak_bytes()) - gradient_bytes) / logits_bytes;
}

TEST(SsnLoss, PeakWorkingMemoryIsAtMostTwiceTheSampledLogits) {
  const double ours = peak_working_memory_ratio(/*plain=*/false);
  const double plain = peak_working_memory_ratio(/*plain=*/true);
  RecordProperty("peak_memory_ratio_ssn", std::to_string(ours));
  RecordProperty("peak_memory_ratio_plain_autograd", std::to_string(plain));
  std::cout << "peak working memory / (M x B x N logits): ours " << ours << ", plain autograd "
            << plain << "\n";
  EXPECT_LE(ours, 2.0);
  EXPECT_LT(ours, plain);
}

TEST(SsnLoss, RejectsBadInputWithClearMessages) {
  const LowRankNormal dist(at::zeros({1, 8}, at::kDouble), at::zeros({1, 8, 1}, at::kDouble),
                           at::ones({1, 8}, at::kDouble), {2, 4});
  const at::Tensor target = at::zeros({1, 4}, at::kLong);
  EXPECT_THAT(error_of([&] { ssn_loss(dist, target, 3); }),
              HasSubstr("num_mc_samples must be even and >= 2 (antithetic pairs), got 3"));
  EXPECT_THAT(error_of([&] { ssn_loss(dist, target, 0); }),
              HasSubstr("num_mc_samples must be even and >= 2 (antithetic pairs), got 0"));
  EXPECT_THAT(error_of([&] {
                ssn_loss(dist, at::zeros({1, 5}, at::kLong), 2);
              }),
              HasSubstr("target must have shape [B, *spatial] = [1, 4] or [B, A, *spatial] (A "
                        "annotations per example), got [1, 5]"));
  EXPECT_THAT(error_of([&] {
                ssn_loss(dist, at::zeros({1, 3, 5}, at::kLong), 2);
              }),
              HasSubstr("or [B, A, *spatial] (A annotations per example), got [1, 3, 5]"));
  EXPECT_THAT(error_of([&] {
                ssn_loss(dist, at::full({1, 4}, 2, at::kLong), 2);
              }),
              HasSubstr("target labels must lie in [0, 2), got values in [2, 2]"));
  EXPECT_THAT(error_of([&] {
                ssn_loss(dist, at::zeros({1, 4}, at::kFloat), 2);
              }),
              HasSubstr("target must hold integer class labels, got Float"));
  const LowRankNormal flat(at::zeros({1, 8}, at::kDouble), at::zeros({1, 8, 1}, at::kDouble),
                           at::ones({1, 8}, at::kDouble));
  EXPECT_THAT(error_of([&] { ssn_loss(flat, target, 2); }),
              HasSubstr("needs an event shape (C, *spatial)"));
  EXPECT_THAT(error_of([&] {
                SegmentationLoss({LossKind::kStochasticMcIntegral, 7});
              }),
              HasSubstr("num_mc_samples must be even and >= 2 (antithetic pairs), got 7"));
  const SegmentationLoss loss({LossKind::kStochasticMcIntegral, 2});
  EXPECT_THAT(error_of([&] {
                loss(at::zeros({1, 2, 4}), nullptr, target);
              }),
              HasSubstr("the SSN loss needs the model's distribution, got none"));
}

TEST(CrossEntropyLoss, UniformLogitsCostLogC) {
  const at::Tensor logits = at::zeros({2, 4, 3, 3}, at::kDouble);
  const at::Tensor target = at::randint(4, {2, 3, 3}, at::kLong);
  const SegmentationLoss loss({LossKind::kCrossEntropy, 0});
  EXPECT_NEAR(loss(logits, nullptr, target).item<double>(), std::log(4.0), 1e-12);
  EXPECT_THAT(error_of([&] {
                loss::cross_entropy_loss(logits, at::zeros({2, 3}, at::kLong));
              }),
              HasSubstr("target must have shape [B, *spatial] = [2, 3, 3] or [B, A, *spatial] (A "
                        "annotations per example), got [2, 3]"));
  EXPECT_THAT(error_of([&] {
                loss::cross_entropy_loss(logits, at::full({2, 3, 3}, 4, at::kLong));
              }),
              HasSubstr("target labels must lie in [0, 4), got values in [4, 4]"));
}

TEST(CrossEntropyLoss, SeveralAnnotationsPerExampleCostTheMeanOfTheirLosses) {
  const at::Tensor logits = at::randn({2, 3, 4, 5}, at::kDouble);
  const at::Tensor target = at::randint(3, {2, 4, 4, 5}, at::kLong);
  double mean = 0.0;
  for (int64_t a = 0; a < 4; ++a) {
    mean += loss::cross_entropy_loss(logits, target.select(1, a)).item<double>() / 4.0;
  }
  EXPECT_NEAR(loss::cross_entropy_loss(logits, target).item<double>(), mean, 1e-12);
}

TEST(MonteCarloLogLikelihood, IsTheLogOfTheMeanLikelihood) {
  const at::Tensor per_sample = at::tensor({-1.0, -700.0, -3.0, -702.0}, at::kDouble).view({2, 2});
  const at::Tensor result = monte_carlo_log_likelihood(per_sample);
  EXPECT_NEAR(result[0].item<double>(), std::log((std::exp(-1.0) + std::exp(-3.0)) / 2), 1e-14);
  // Stable far below exp's underflow.
  EXPECT_NEAR(result[1].item<double>(), -700.0 + std::log((1 + std::exp(-2.0)) / 2), 1e-12);
}

}  // namespace
}  // namespace ssn::loss
