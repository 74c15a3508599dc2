// The golden checks again on a CUDA device, and CPU/CUDA agreement of the head + loss; skipped
// where LibTorch has no CUDA device.

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "golden.h"
#include "ssn/distributions/low_rank_normal.h"
#include "ssn/evaluation/evaluate.h"
#include "ssn/evaluation/sampling.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/nn/stochastic_segmentation_head.h"
#include "ssn/runtime/cuda_memory.h"

namespace ssn {
namespace {

using testing::load_golden;
using testing::max_relative_error;
using testing::to_tensor;

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) {
      GTEST_SKIP() << "no CUDA device";
    }
  }
  static at::Tensor on_cuda(const nlohmann::json& value, at::ScalarType dtype = at::kDouble) {
    return to_tensor(value, dtype).to(torch::kCUDA);
  }
};

TEST_F(Cuda, GoldenLowRankNormalMatchesInFloat64) {
  for (const auto& c : load_golden("lowrank_mvn.json")["cases"]) {
    const LowRankNormal dist(on_cuda(c["loc"]), on_cuda(c["cov_factor"]), on_cuda(c["cov_diag"]));
    EXPECT_LT(
        max_relative_error(dist.log_prob(on_cuda(c["value"])).cpu(), to_tensor(c["log_prob"])),
        1e-9);
    EXPECT_LT(max_relative_error(dist.entropy().cpu(), to_tensor(c["entropy"])), 1e-9);
    EXPECT_LT(
        max_relative_error(dist.rsample_from_noise(on_cuda(c["eps_W"]), on_cuda(c["eps_D"])).cpu(),
                           to_tensor(c["rsample"]), 1e-3),
        1e-9);
  }
}

TEST_F(Cuda, GoldenSsnLossAndGradientsMatchInFloat64) {
  for (const auto& c : load_golden("ssn_loss.json")["cases"]) {
    const at::Tensor mean_maps = to_tensor(c["mean"]);
    const int64_t batch = mean_maps.size(0);
    auto loc = mean_maps.reshape({batch, -1}).to(torch::kCUDA).set_requires_grad(true);
    auto factor = on_cuda(c["cov_factor"]).set_requires_grad(true);
    auto diag = on_cuda(c["cov_diag"]).set_requires_grad(true);
    const std::vector<int64_t> event(mean_maps.sizes().begin() + 1, mean_maps.sizes().end());
    const auto loss = loss::ssn_loss_from_noise(LowRankNormal(loc, factor, diag, event),
                                                on_cuda(c["target"], at::kLong),
                                                on_cuda(c["eps_W"]), on_cuda(c["eps_D"]));
    loss.backward();
    const double expected = c["loss"].get<double>();
    EXPECT_LT(std::abs(loss.item<double>() - expected) / std::abs(expected), 1e-9);
    const at::Tensor grad_mean = to_tensor(c["grad_mean"]).reshape({batch, -1});
    EXPECT_LT(max_relative_error(loc.grad().cpu(), grad_mean, grad_mean.abs().max().item<double>()),
              1e-9);
    const at::Tensor grad_factor = to_tensor(c["grad_cov_factor"]);
    EXPECT_LT(max_relative_error(factor.grad().cpu(), grad_factor,
                                 grad_factor.abs().max().item<double>()),
              1e-9);
    const at::Tensor grad_diag = to_tensor(c["grad_cov_diag"]);
    EXPECT_LT(
        max_relative_error(diag.grad().cpu(), grad_diag, grad_diag.abs().max().item<double>()),
        1e-9);
  }
}

TEST_F(Cuda, HeadAndLossAgreeWithTheCpu) {
  torch::manual_seed(1);
  nn::StochasticSegmentationHead head(nn::StochasticSegmentationHeadOptions(8, 3, 5));
  head->to(torch::kDouble);
  const auto features = torch::randn({2, 8, 16, 16}, torch::kDouble);
  const auto mask = torch::rand({2, 16, 16}) > 0.2;
  const auto target = torch::randint(3, {2, 16, 16}, torch::kLong);
  const auto eps_W = torch::randn({4, 2, 5}, torch::kDouble);
  const auto eps_D = torch::randn({4, 2, 3 * 256}, torch::kDouble);

  auto run = [&](torch::Device device) {
    head->to(device);
    head->zero_grad();
    const auto out = head->forward(features.to(device), mask.to(device));
    const auto loss = loss::ssn_loss_from_noise(out.distribution, target.to(device),
                                                eps_W.to(device), eps_D.to(device));
    loss.backward();
    return std::make_pair(loss.item<double>(),
                          head->named_parameters()["cov_factor_l.weight"].grad().cpu());
  };
  const auto cpu = run(torch::kCPU);
  const auto cuda = run(torch::kCUDA);
  EXPECT_NEAR(cuda.first, cpu.first, 1e-9 * std::abs(cpu.first));
  EXPECT_TRUE(at::allclose(cuda.second, cpu.second, 1e-9, 1e-12));
}

TEST_F(Cuda, SamplingControlsWorkOnTheDevice) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA);
  const LowRankNormal dist(torch::randn({2, 12}, opts), torch::randn({2, 12, 3}, opts),
                           torch::rand({2, 12}, opts) + 0.1, {3, 4});
  SamplingControls controls;
  controls.temperature = 0.0;
  EXPECT_TRUE(
      dist.rsample(4, c10::nullopt, controls).eq(dist.loc().unsqueeze(0)).all().item<bool>());
  controls.temperature = 1.0;
  controls.class_weights = torch::tensor({1.0f, 0.0f, 1.0f});  // on the CPU: moved as needed
  const auto samples = dist.to_event_shape(dist.rsample(4, c10::nullopt, controls));
  EXPECT_TRUE(samples.select(2, 1)
                  .eq(dist.to_event_shape(dist.loc()).select(1, 1).unsqueeze(0))
                  .all()
                  .item<bool>());
}

// A CPU generator handed to a distribution on the GPU (sample, evaluate and calibrate seed one per
// case; validation's loss; found by the GPU run of 2026-11-28: "Expected a 'cuda' device type for
// generator but found 'cpu'"): the same noise, so the same samples, as on the CPU.
TEST_F(Cuda, ACpuGeneratorDrawsTheCpuNoiseForADeviceDistribution) {
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat);
  const LowRankNormal on_cpu(torch::randn({2, 12}, cpu), torch::randn({2, 12, 3}, cpu),
                             torch::rand({2, 12}, cpu) + 0.1, {3, 4});
  const LowRankNormal on_cuda(on_cpu.loc().cuda(), on_cpu.cov_factor().cuda(),
                              on_cpu.cov_diag().cuda(), {3, 4});
  at::Generator a = at::detail::createCPUGenerator(3), b = at::detail::createCPUGenerator(3);
  EXPECT_TRUE(at::allclose(on_cuda.rsample(4, a).cpu(), on_cpu.rsample(4, b), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(on_cuda.rsample_antithetic(4, a).cpu(), on_cpu.rsample_antithetic(4, b),
                           1e-5, 1e-5));
}

// ssn sample --device cuda: the CPU's samples (the same noise), computed on the GPU.
TEST_F(Cuda, DrawSamplesOnTheDeviceGivesTheCpuSamples) {
  at::Generator maps_generator = at::detail::createCPUGenerator(3);
  const auto options = at::TensorOptions(at::kFloat);
  const evaluation::PredictionMaps maps{at::randn({4, 6, 700}, maps_generator, options) * 2,
                                        at::rand({4, 6, 700}, maps_generator, options) * 0.5 + 0.05,
                                        at::randn({12, 6, 700}, maps_generator, options)};
  SamplingControls controls;
  controls.temperature = 0.8;
  controls.class_weights = torch::tensor({1.0, 2.0, 0.5, 1.0});
  std::vector<at::Tensor> cpu, cuda;
  evaluation::draw_samples(
      maps, 10, controls, at::detail::createCPUGenerator(4),
      [&](int64_t, const at::Tensor& labels) { cpu.push_back(labels.clone()); });
  const evaluation::SampleStatistics statistics = evaluation::draw_samples(
      maps, 10, controls, at::detail::createCPUGenerator(4),
      [&](int64_t, const at::Tensor& labels) { cuda.push_back(labels.clone()); },
      at::Device(at::kCUDA));
  ASSERT_EQ(cuda.size(), 10u);
  EXPECT_TRUE(cuda[0].device().is_cpu());
  EXPECT_GT(at::stack(cpu).eq(at::stack(cuda)).to(at::kDouble).mean().item<double>(), 0.9999);
  EXPECT_TRUE(statistics.frequency.device().is_cpu());
}

// ssn evaluate --device cuda: the metrics of the CPU, up to float rounding.
TEST_F(Cuda, EvaluatePredictionOnTheDeviceMatchesTheCpu) {
  at::Generator maps_generator = at::detail::createCPUGenerator(5);
  const auto options = at::TensorOptions(at::kFloat);
  const at::Tensor mean = at::randn({2, 16, 16}, maps_generator, options);
  const at::Tensor diag = at::rand({2, 16, 16}, maps_generator, options) * 0.5 + 0.05;
  const at::Tensor factor = at::randn({6, 16, 16}, maps_generator, options);
  const at::Tensor annotations = at::randint(2, {4, 16, 16}, maps_generator, at::kByte);
  evaluation::EvaluationOptions evaluation_options;
  evaluation_options.num_classes = 2;
  const auto cpu = evaluation::evaluate_prediction(
      mean, diag, factor, annotations, evaluation_options, 30, at::detail::createCPUGenerator(6));
  const auto cuda =
      evaluation::evaluate_prediction(mean, diag, factor, annotations, evaluation_options, 30,
                                      at::detail::createCPUGenerator(6), {}, at::Device(at::kCUDA));
  ASSERT_EQ(cpu.size(), cuda.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_EQ(cpu[i].first, cuda[i].first);
    if (std::isnan(cpu[i].second)) {
      EXPECT_TRUE(std::isnan(cuda[i].second)) << cpu[i].first;
    } else {
      EXPECT_NEAR(cuda[i].second, cpu[i].second, 1e-4 * (1 + std::abs(cpu[i].second)))
          << cpu[i].first;
    }
  }
}

// The caching allocator's statistics where LibTorch has CUDA (ssn benchmark train's peak).
TEST_F(Cuda, AllocatorPeakCountsATensor) {
  if (!runtime::cuda_memory_stats_available()) GTEST_SKIP() << "built without CUDA statistics";
  const at::Device device(at::kCUDA);
  runtime::reset_cuda_peak(device);
  const int64_t before = runtime::cuda_allocated_bytes(device).value();
  {
    const at::Tensor t = at::empty({1 << 20}, at::TensorOptions(device).dtype(at::kFloat));
    EXPECT_GE(runtime::cuda_allocated_bytes(device).value() - before, int64_t{4} << 20);
  }
  EXPECT_GE(runtime::cuda_peak_allocated_bytes(device).value() - before, int64_t{4} << 20);
}

}  // namespace
}  // namespace ssn
