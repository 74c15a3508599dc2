// Mixed precision (runtime/precision.h, train/grad_scaler.h) and the CPU block cache
// (runtime/cpu_cache.h).

#include "ssn/runtime/precision.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "golden.h"
#include "ssn/config/config.h"
#include "ssn/runtime/cpu_cache.h"
#include "ssn/train/checkpoint.h"
#include "ssn/train/grad_scaler.h"
#include "ssn/train/model_factory.h"

namespace ssn {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

config::Config tiny_config(const std::string& precision) {
  return config::parse_config(nlohmann::json::parse(R"({
    "model": {"StochasticUNet": {"input_channels": 1, "num_classes": 2, "rank": 2,
                                 "filters": [4, 8], "convs_per_level": 1}},
    "data": {"dataset": "lidc", "crop": 16, "size": 16, "annotators": 2},
    "training": {"batch_size": 2, "num_epochs": 1, "precision": ")" +
                                                    precision + R"("},
    "loss": {"StochasticSegmentationNetworkLossMCIntegral": {"num_mc_samples": 2}},
    "optimizer": {"Adam": {"lr": 1e-3}}
  })"));
}

TEST(Precision, ParsesTheConfigKeyAndNamesItWhenWrong) {
  EXPECT_EQ(tiny_config("bf16").training.precision, runtime::Precision::kBf16);
  EXPECT_EQ(tiny_config("fp16").training.precision, runtime::Precision::kFp16);
  EXPECT_EQ(tiny_config("fp32").training.precision, runtime::Precision::kFp32);
  EXPECT_THAT(error_of([] { tiny_config("fp8"); }),
              HasSubstr("training.precision: expected fp32, bf16 or fp16, got \"fp8\""));
}

TEST(Precision, RefusesWhatTheDeviceCannotRun) {
  EXPECT_NO_THROW(runtime::check_precision_supported(runtime::Precision::kFp32, torch::kCPU));
  EXPECT_THAT(
      error_of([] { runtime::check_precision_supported(runtime::Precision::kFp16, torch::kCPU); }),
      HasSubstr("precision fp16 needs a CUDA device"));
  if (runtime::cpu_has_native_bf16()) {
    EXPECT_NO_THROW(runtime::check_precision_supported(runtime::Precision::kBf16, torch::kCPU));
  } else {
    EXPECT_THAT(error_of([] {
                  runtime::check_precision_supported(runtime::Precision::kBf16, torch::kCPU);
                }),
                HasSubstr("no native bfloat16"));
  }
  // The error names the config key.
  nn::SegmentationModel model = train::build_model(tiny_config("fp16").model);
  EXPECT_THAT(error_of([&] { train::apply_precision(*model, tiny_config("fp16"), torch::kCPU); }),
              HasSubstr("training.precision"));
}

TEST(Precision, GuardRunsConvolutionsInBfloat16AndRestoresTheState) {
  const at::Tensor x = torch::randn({1, 2, 8, 8});
  const at::Tensor w = torch::randn({3, 2, 3, 3});
  {
    const runtime::AutocastGuard guard(runtime::Precision::kBf16, torch::kCPU);
    EXPECT_EQ(at::conv2d(x, w).scalar_type(), torch::kBFloat16);
    {
      const runtime::AutocastOff off;
      EXPECT_EQ(at::conv2d(x, w).scalar_type(), torch::kFloat);
    }
    EXPECT_EQ(at::conv2d(x, w).scalar_type(), torch::kBFloat16) << "AutocastOff restores";
  }
  EXPECT_EQ(at::conv2d(x, w).scalar_type(), torch::kFloat) << "the guard restores";
  const runtime::AutocastGuard fp32(runtime::Precision::kFp32, torch::kCPU);
  EXPECT_EQ(at::conv2d(x, w).scalar_type(), torch::kFloat);
}

// The backbone in bfloat16, the head and every output in float32; the mean logits within
// bfloat16's precision of the float32 model's; gradients reach every parameter.
TEST(Precision, Bf16ModelGivesFloat32OutputsCloseToFp32) {
  if (!runtime::cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bfloat16";
  torch::manual_seed(3);
  const config::Config config = tiny_config("bf16");
  nn::SegmentationModel model = train::build_model(config.model);
  const at::Tensor image = torch::randn({2, 1, 16, 16});
  const nn::ModelOutput reference = model->forward(image);
  train::apply_precision(*model, config, torch::kCPU);
  EXPECT_EQ(model->precision(), runtime::Precision::kBf16);
  const nn::ModelOutput out = model->forward(image);
  EXPECT_EQ(out.mean_logits.scalar_type(), torch::kFloat);
  EXPECT_EQ(out.stochastic->cov_factor.scalar_type(), torch::kFloat);
  EXPECT_EQ(out.stochastic->cov_diag.scalar_type(), torch::kFloat);
  const double scale = reference.mean_logits.abs().max().item<double>();
  EXPECT_LT((out.mean_logits - reference.mean_logits).abs().max().item<double>(), 0.05 * scale);
  EXPECT_FALSE(out.mean_logits.equal(reference.mean_logits)) << "the backbone ran in bf16";
  out.mean_logits.sum().backward();
  for (const auto& p : model->backbone().parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
  }
}

TEST(GradScaler, SkipsOverflowedStepsHalvesTheScaleAndGrowsItAfterTheInterval) {
  at::Tensor w = torch::ones({2}, torch::requires_grad());
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(1.0));
  train::GradScaler scaler(true, /*growth_interval=*/2);
  EXPECT_EQ(scaler.state().scale, 65536.0);
  const auto step = [&](double value) {
    sgd.zero_grad();
    scaler.scale((w * value).sum()).backward();
    return scaler.step(sgd);
  };
  EXPECT_TRUE(step(0.5));  // gradient 0.5 each, unscaled before the step
  EXPECT_TRUE(torch::allclose(w, torch::full({2}, 0.5)));
  EXPECT_FALSE(step(std::numeric_limits<double>::infinity()));
  EXPECT_TRUE(torch::allclose(w, torch::full({2}, 0.5))) << "the overflowed step is skipped";
  EXPECT_EQ(scaler.state().scale, 32768.0);
  EXPECT_TRUE(step(0.25));
  EXPECT_TRUE(step(0.25));
  EXPECT_EQ(scaler.state().scale, 65536.0) << "two finite steps in a row double it";
  EXPECT_EQ(scaler.state().growth_tracker, 0);
  EXPECT_TRUE(torch::allclose(w, torch::zeros({2})));

  train::GradScaler off(false);
  EXPECT_TRUE(off.scale(torch::ones({})).equal(torch::ones({})));
}

TEST(GradScaler, StateTravelsInTheCheckpoint) {
  const config::Config config = tiny_config("fp32");
  nn::SegmentationModel model = train::build_model(config.model);
  auto optimizer = train::build_optimizer(config.optimizer, *model);
  train::TrainingState state;
  state.data_rng = at::detail::getDefaultCPUGenerator().get_state();
  state.noise_rng = state.data_rng;
  state.torch_rng = state.data_rng;
  const fs::path path =
      fs::temp_directory_path() / ("ssn_scaler_" + std::to_string(::getpid()) + ".pt");
  train::save_checkpoint(path, *model, *optimizer, state);
  EXPECT_FALSE(train::load_checkpoint(path, *model, *optimizer).grad_scaler.has_value());
  state.grad_scaler = train::GradScalerState{1024.0, 17};
  train::save_checkpoint(path, *model, *optimizer, state);
  const auto loaded = train::load_checkpoint(path, *model, *optimizer).grad_scaler;
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->scale, 1024.0);
  EXPECT_EQ(loaded->growth_tracker, 17);
  fs::remove(path);
}

// Installed process-wide (as the CLI does): a freed large block comes back for the next request
// of its size; small ones pass through; release frees the idle ones.
TEST(CpuCache, ReusesLargeBlocksAndKeepsTensorsIntact) {
  runtime::install_cpu_cache();
  ASSERT_TRUE(runtime::cpu_cache_installed());
  runtime::release_cpu_cache();
  const runtime::CpuCacheStats before = runtime::cpu_cache_stats();
  const void* first = nullptr;
  {
    at::Tensor a = torch::full({1 << 19}, 3.0f);  // 2 MiB
    first = a.data_ptr();
    EXPECT_EQ(runtime::cpu_cache_stats().in_use_bytes - before.in_use_bytes, 2 << 20);
  }
  EXPECT_EQ(runtime::cpu_cache_stats().idle_bytes, 2 << 20);
  at::Tensor b = torch::arange(1 << 19, torch::kFloat);
  EXPECT_EQ(b.data_ptr(), first) << "the same block again";
  EXPECT_EQ(runtime::cpu_cache_stats().hits, before.hits + 1);
  EXPECT_EQ(b[12345].item<float>(), 12345.0f);
  at::Tensor small = torch::ones({16});
  EXPECT_EQ(small.sum().item<float>(), 16.0f);
  b = at::Tensor();
  runtime::release_cpu_cache();
  EXPECT_EQ(runtime::cpu_cache_stats().idle_bytes, 0);
}

}  // namespace
}  // namespace ssn
