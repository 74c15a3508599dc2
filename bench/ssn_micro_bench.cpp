// Micro benchmarks of the core operations at the paper's LIDC training size: B = 8 images of
// 128 x 128 pixels, C = 2 classes, rank R = 10, M = 20 Monte-Carlo samples, float32.
// bench/pytorch_micro.py times the same operations with torch.distributions (as the reference
// implementation does); bench/run_micro.sh runs both and prints the comparison.

#include <benchmark/benchmark.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cstdlib>

#include "ssn/distributions/low_rank_normal.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/runtime/memory_tracker.h"
#include "ssn/runtime/threads.h"

namespace {

constexpr int64_t kBatch = 8, kClasses = 2, kSide = 128, kRank = 10, kSamples = 20;
constexpr int64_t kPixels = kSide * kSide, kEvents = kClasses * kPixels;

// SSN_BENCH_DEVICE=cuda runs on the GPU (each iteration ends with a device synchronisation).
torch::Device bench_device() {
  const char* name = std::getenv("SSN_BENCH_DEVICE");
  return torch::Device(name != nullptr && *name != '\0' ? name : "cpu");
}

void synchronize() {
  if (bench_device().is_cuda()) torch::cuda::synchronize();
}

struct Inputs {
  torch::Device device = bench_device();
  torch::Tensor loc = torch::randn({kBatch, kEvents}).to(device);
  torch::Tensor factor = (0.1 * torch::randn({kBatch, kEvents, kRank})).to(device);
  torch::Tensor diag = (torch::rand({kBatch, kEvents}) + 0.1).to(device);
  torch::Tensor value = torch::randn({kBatch, kEvents}).to(device);
  torch::Tensor target = torch::randint(kClasses, {kBatch, kSide, kSide}, torch::kLong).to(device);
};

Inputs& inputs() {
  static Inputs instance = [] {
    torch::manual_seed(0);
    return Inputs();
  }();
  return instance;
}

void set_threads(benchmark::State& state) {
  state.counters["threads"] = ssn::runtime::configure_threads(static_cast<int>(
      std::getenv("SSN_BENCH_THREADS") ? std::atoi(std::getenv("SSN_BENCH_THREADS")) : 0));
}

void BM_Rsample(benchmark::State& state) {
  set_threads(state);
  torch::NoGradGuard no_grad;
  const auto& in = inputs();
  const ssn::LowRankNormal dist(in.loc, in.factor, in.diag, {kClasses, kSide, kSide});
  for (auto _ : state) {
    benchmark::DoNotOptimize(dist.rsample(kSamples));
    synchronize();
  }
}
BENCHMARK(BM_Rsample)->Unit(benchmark::kMillisecond)->UseRealTime();

// Construction included: torch.distributions factorises the capacitance in its constructor.
void BM_LogProb(benchmark::State& state) {
  set_threads(state);
  torch::NoGradGuard no_grad;
  const auto& in = inputs();
  for (auto _ : state) {
    const ssn::LowRankNormal dist(in.loc, in.factor, in.diag);
    benchmark::DoNotOptimize(dist.log_prob(in.value));
    synchronize();
  }
}
BENCHMARK(BM_LogProb)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LossForwardBackward(benchmark::State& state) {
  set_threads(state);
  const auto& in = inputs();
  auto loc = in.loc.clone().set_requires_grad(true);
  auto factor = in.factor.clone().set_requires_grad(true);
  auto diag = in.diag.clone().set_requires_grad(true);
  auto step = [&] {
    const ssn::LowRankNormal dist(loc, factor, diag, {kClasses, kSide, kSide});
    ssn::loss::ssn_loss(dist, in.target, kSamples).backward();
  };
  for (auto _ : state) {
    step();
    synchronize();
  }
  if (in.device.is_cuda()) return;  // the tracker counts CPU memory only
  // Peak bytes allocated during one step (inputs excluded, gradients included), as a multiple of
  // the M x B x N float32 logits.
  loc.mutable_grad().reset();
  factor.mutable_grad().reset();
  diag.mutable_grad().reset();
  ssn::runtime::CpuMemoryTracker tracker;
  step();
  state.counters["peak_MiB"] = double(tracker.peak_bytes()) / (1 << 20);
  state.counters["peak_over_logits"] =
      double(tracker.peak_bytes()) / (double(kSamples * kBatch * kEvents) * sizeof(float));
}
BENCHMARK(BM_LossForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
