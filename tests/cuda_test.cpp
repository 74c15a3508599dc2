// The golden checks again on a CUDA device, and CPU/CUDA agreement of the head + loss; skipped
// where LibTorch has no CUDA device.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "golden.h"
#include "ssn/distributions/low_rank_normal.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/nn/stochastic_segmentation_head.h"

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

}  // namespace
}  // namespace ssn
