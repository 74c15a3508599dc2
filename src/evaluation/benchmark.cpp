#include "ssn/evaluation/benchmark.h"

#include <ATen/CPUGeneratorImpl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <fstream>

#include "ssn/evaluation/sampling.h"
#include "ssn/io/atomic_file.h"
#include "ssn/metrics/metrics.h"
#include "ssn/metrics/overlap.h"
#include "ssn/runtime/memory_tracker.h"

namespace ssn::evaluation {

std::vector<EvaluateWorkload> standard_evaluate_workloads() {
  return {{"lidc_2d", 100, 4, 2, {128, 128}, true}, {"brats_3d", 20, 1, 4, {155, 240, 240}, false}};
}

at::Tensor synthetic_label_maps(const EvaluateWorkload& w, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const int64_t maps = w.num_samples + w.num_annotations;
  // Normalised coordinates in [-1, 1] per axis; squared distance from a jittered centre.
  std::vector<at::Tensor> axes;
  for (int64_t size : w.shape) axes.push_back(at::linspace(-1, 1, size, at::kFloat));
  const auto grids = at::meshgrid(axes, "ij");
  std::vector<at::Tensor> out;
  for (int64_t m = 0; m < maps; ++m) {
    at::Tensor radius2 = at::zeros(w.shape, at::kFloat);
    const at::Tensor shift = 0.08 * at::randn({static_cast<int64_t>(w.shape.size())}, generator);
    for (size_t d = 0; d < grids.size(); ++d) {
      radius2 += (grids[d] - shift[d].item<float>()).pow(2);
    }
    at::Tensor labels = at::zeros(w.shape, at::kByte);
    // Class c occupies a ball of radius ~ 0.6 / c, nested, with per-map jitter.
    for (int64_t c = 1; c < w.num_classes; ++c) {
      const double r =
          0.6 / static_cast<double>(c) * (1.0 + 0.15 * at::randn({1}, generator).item<double>());
      labels.masked_fill_(radius2 < r * r, static_cast<uint8_t>(c));
    }
    out.push_back(labels);
  }
  return at::stack(out);
}

nlohmann::json benchmark_evaluate(const EvaluateWorkload& w, int64_t repeats, uint64_t seed,
                                  const std::filesystem::path& data_out) {
  TORCH_CHECK(repeats >= 1, "benchmark: repeats must be >= 1, got ", repeats);
  const at::Tensor maps = synthetic_label_maps(w, seed);
  const at::Tensor samples = maps.slice(0, 0, w.num_samples);
  const at::Tensor annotations = maps.slice(0, w.num_samples);
  if (!data_out.empty()) {
    io::write_atomically(data_out / (w.name + ".u8"), [&](const std::filesystem::path& tmp) {
      std::ofstream file(tmp, std::ios::binary);
      file.write(reinterpret_cast<const char*>(maps.data_ptr<uint8_t>()), maps.numel());
      TORCH_CHECK(file.good(), "cannot write ", tmp.string());
    });
  }
  std::vector<double> seconds;
  metrics::DistributionMetrics result;
  double ncc = 0.0;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    result = metrics::distribution_metrics(samples, annotations, w.num_classes);
    if (w.with_ncc) ncc = metrics::variance_ncc_of_labels(samples, annotations, w.num_classes);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  nlohmann::json metrics = {{"ged", result.ged},
                            {"diversity", result.diversity},
                            {"annotator_diversity", result.annotator_diversity},
                            {"hm_iou", result.hm_iou}};
  if (w.with_ncc) metrics["ncc"] = ncc;
  return {{"name", w.name},
          {"num_samples", w.num_samples},
          {"num_annotations", w.num_annotations},
          {"num_classes", w.num_classes},
          {"shape", w.shape},
          {"seconds", sorted[sorted.size() / 2]},
          {"seconds_all", seconds},
          {"metrics", metrics}};
}

nlohmann::json benchmark_sample(const std::vector<int64_t>& shape, int64_t classes, int64_t rank,
                                int64_t num_samples, uint64_t seed) {
  TORCH_CHECK(!shape.empty() && classes >= 2 && rank >= 0 && num_samples >= 1,
              "benchmark sample: needs a shape, >= 2 classes, rank >= 0 and >= 1 sample");
  at::Generator generator = at::detail::createCPUGenerator(seed);
  std::vector<int64_t> map_shape = {classes};
  map_shape.insert(map_shape.end(), shape.begin(), shape.end());
  std::vector<int64_t> factor_shape = {classes * rank};
  factor_shape.insert(factor_shape.end(), shape.begin(), shape.end());
  runtime::CpuMemoryTracker tracker;  // the maps count: a predictions folder's case in memory
  const auto start = std::chrono::steady_clock::now();
  PredictionMaps maps;
  maps.mean = at::randn(map_shape, generator);
  maps.cov_diag = at::randn(map_shape, generator).mul_(0.5).sub_(2.0).exp_();
  maps.cov_factor = at::randn(factor_shape, generator).mul_(0.3);
  const double setup =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t drawn = 0;
  const auto sampling = std::chrono::steady_clock::now();
  draw_samples(maps, num_samples, SamplingControls{}, generator,
               [&](int64_t, const at::Tensor&) { ++drawn; });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sampling).count();
  TORCH_CHECK(drawn == num_samples, "benchmark sample: drew ", drawn, " of ", num_samples);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return {{"shape", shape},
          {"classes", classes},
          {"rank", rank},
          {"num_samples", num_samples},
          {"threads", at::get_num_threads()},
          {"seconds", seconds},
          {"seconds_per_sample", seconds / static_cast<double>(num_samples)},
          {"setup_seconds", setup},
          {"peak_tensor_bytes", tracker.peak_bytes()},
          {"peak_rss_bytes", static_cast<int64_t>(usage.ru_maxrss) * 1024}};
}

}  // namespace ssn::evaluation
