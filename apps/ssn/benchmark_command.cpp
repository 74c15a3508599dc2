// ssn benchmark: throughput of the library's hot paths on synthetic data.

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "flags.h"
#include "ssn/config/config.h"
#include "ssn/data/elastic.h"
#include "ssn/evaluation/benchmark.h"
#include "ssn/runtime/memory_tracker.h"
#include "ssn/train/benchmark_train.h"
#include "ssn/train/inference.h"

namespace ssn::cli {
namespace {

struct BenchmarkFlags {
  std::string device = "cpu";
  std::string precision;  // empty: the config's training.precision
  int64_t steps = 10;
  int64_t warmup = 2;
  bool json = false;
  bool phases = false;
  int64_t repeats = 5;
  uint64_t seed = 0;
  std::string data_out;
  std::string config_file;
  std::vector<int64_t> shape = {155, 240, 240};
  int64_t rank = 10;
  int64_t classes = 4;
  int64_t num_samples = 20;
};

void run_predict_benchmark(const BenchmarkFlags& flags) {
  const config::Config config = config::load_config(flags.config_file);
  const nlohmann::json report = train::benchmark_predict(config, flags.shape, flags.seed);
  if (flags.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << "ssn benchmark predict (" << report["threads"]
            << " threads): " << report["model"].get<std::string>() << " on "
            << report["shape"].dump() << ", " << report["tiles"] << " tiles of "
            << report["tile_input"].dump() << " -> " << report["tile_output"].dump() << ": "
            << report["seconds"].get<double>() << " s, peak RSS "
            << report["peak_rss_bytes"].get<double>() / (1 << 20) << " MiB (tensors at once "
            << report["peak_tensor_bytes"].get<double>() / (1 << 20)
            << " MiB, of which the output maps " << report["output_bytes"].get<double>() / (1 << 20)
            << " MiB)\n";
}

void run_evaluate_benchmark(const BenchmarkFlags& flags) {
  nlohmann::json report = {{"threads", at::get_num_threads()},
                           {"workloads", nlohmann::json::array()}};
  for (const auto& workload : evaluation::standard_evaluate_workloads()) {
    report["workloads"].push_back(
        evaluation::benchmark_evaluate(workload, flags.repeats, flags.seed, flags.data_out));
  }
  if (flags.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << "ssn benchmark evaluate (" << report["threads"] << " threads, median of "
            << flags.repeats << ")\n";
  for (const auto& w : report["workloads"]) {
    std::cout << "  " << w["name"].get<std::string>() << ": " << w["num_samples"] << " samples x "
              << w["num_annotations"] << " annotations of " << w["shape"].dump() << ", "
              << w["num_classes"] << " classes: " << w["seconds"].get<double>() << " s  "
              << w["metrics"].dump() << "\n";
  }
}

// The reference's elastic deformation of one training case of --shape (4 channels, target,
// mask), forced on: seconds (median), peak tensor memory, and the statistics of the displacement
// field's first component read at offset 0 (a fixed function of noise_shape, period and alpha).
void run_elastic_benchmark(const BenchmarkFlags& flags) {
  const config::Config config = config::load_config(flags.config_file);
  const auto& t = config.training;
  TORCH_CHECK(flags.shape.size() == 3, "--shape: expected 3 sizes, got ", flags.shape.size());
  data::ElasticOptions options;
  options.probability = 1.0;
  options.period = t.elastic_period;
  options.alpha = t.elastic_alpha;
  options.noise_shape = t.elastic_noise_shape;
  runtime::CpuMemoryTracker tracker;
  data::ElasticField field(options);
  at::Generator generator = at::detail::createCPUGenerator(flags.seed);
  std::vector<double> seconds;
  for (int64_t r = 0; r < flags.repeats; ++r) {
    data::Volume volume;
    volume.id = "benchmark";
    std::vector<int64_t> image_shape = {4};
    image_shape.insert(image_shape.end(), flags.shape.begin(), flags.shape.end());
    volume.image = at::randn(image_shape, generator);
    volume.target = at::randint(4, flags.shape, generator, at::kLong);
    volume.mask = at::ones(flags.shape, at::kBool);
    tracker.reset_peak();
    const auto begin = std::chrono::steady_clock::now();
    data::elastic_deform(volume, field, generator);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  }
  // The first deformation may compute the whole field (ElasticField); the others read it.
  const double first = seconds.front();
  if (seconds.size() > 1) seconds.erase(seconds.begin());
  std::sort(seconds.begin(), seconds.end());
  const at::Tensor d =
      data::elastic_displacement(field, {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}}, flags.shape)[0].to(
          at::kDouble);
  const nlohmann::json report = {{"threads", at::get_num_threads()},
                                 {"shape", flags.shape},
                                 {"noise_shape", options.noise_shape},
                                 {"period", options.period},
                                 {"alpha", options.alpha},
                                 {"first_seconds", first},
                                 {"seconds", seconds[seconds.size() / 2]},
                                 {"peak_tensor_bytes", tracker.peak_bytes()},
                                 {"field",
                                  {{"mean", d.mean().item<double>()},
                                   {"std", d.std(/*unbiased=*/false).item<double>()},
                                   {"max_abs", d.abs().max().item<double>()},
                                   {"sum_of_squares", d.pow(2).sum().item<double>()}}}};
  if (flags.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << "ssn benchmark elastic (" << report["threads"] << " threads): one case of 4 x "
            << report["shape"].dump() << " deformed in " << report["seconds"].get<double>()
            << " s (median after the first, which took " << report["first_seconds"].get<double>()
            << " s), peak tensor memory " << report["peak_tensor_bytes"].get<double>() / (1 << 20)
            << " MiB; field at offset 0: "
            << "mean " << report["field"]["mean"].get<double>() << ", std "
            << report["field"]["std"].get<double>() << ", max |d| "
            << report["field"]["max_abs"].get<double>() << " voxels\n";
}

void run_train_benchmark(const BenchmarkFlags& flags) {
  config::Config config = config::load_config(flags.config_file);
  if (!flags.precision.empty()) {
    config.training.precision = runtime::parse_precision(flags.precision, "--precision");
  }
  const nlohmann::json report = train::benchmark_train(config, flags.device, flags.steps,
                                                       flags.warmup, flags.seed, flags.phases);
  if (flags.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << "ssn benchmark train (" << report["threads"] << " threads, "
            << report["device"].get<std::string>() << ", " << report["precision"].get<std::string>()
            << "): " << report["model"].get<std::string>() << ", batch "
            << report["input_shape"].dump() << ": " << report["seconds_per_step"].get<double>()
            << " s per step (median of " << flags.steps << " after " << flags.warmup
            << " warm-up), " << report["examples_per_second"].get<double>() << " examples/s";
  if (report["peak_tensor_bytes"].is_number()) {
    std::cout << ", peak tensor memory " << report["peak_tensor_bytes"].get<double>() / (1 << 20)
              << " MiB";
  }
  std::cout << "\n";
  if (report.contains("phase_seconds")) {
    std::cout << "phases (median s):";
    for (const char* phase : {"forward", "loss", "backward", "optimizer"}) {
      std::cout << " " << phase << " " << report["phase_seconds"][phase].get<double>();
    }
    std::cout << "\n";
  }
}

void run_sample_benchmark(const BenchmarkFlags& flags) {
  const nlohmann::json report = evaluation::benchmark_sample(flags.shape, flags.classes, flags.rank,
                                                             flags.num_samples, flags.seed);
  if (flags.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << "ssn benchmark sample (" << report["threads"] << " threads): " << flags.num_samples
            << " samples of " << flags.classes << " classes x " << report["shape"].dump()
            << ", rank " << flags.rank << ": " << report["seconds_per_sample"].get<double>()
            << " s per sample, peak tensor memory "
            << report["peak_tensor_bytes"].get<double>() / (1 << 20)
            << " MiB (maps included), peak RSS "
            << report["peak_rss_bytes"].get<double>() / (1 << 20) << " MiB\n";
}

}  // namespace

void add_benchmark_command(CLI::App& app) {
  CLI::App* command =
      app.add_subcommand("benchmark", "Time the library's hot paths on synthetic data.");
  command->require_subcommand(1);
  auto flags = std::make_shared<BenchmarkFlags>();
  CLI::App* evaluate = command->add_subcommand(
      "evaluate",
      "GED, diversity, HM-IoU and NCC of (a) 100 samples x 4 annotations of 128x128 binary maps\n"
      "and (b) 20 samples x 1 annotation of a 4-class 155x240x240 volume; seconds per case.");
  evaluate->footer("Example:\n  ssn benchmark evaluate --json");
  evaluate->add_flag("--json", flags->json, "Print the results as JSON");
  evaluate->add_option("--repeats", flags->repeats, "Timed repetitions (the median is reported)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  evaluate->add_option("--seed", flags->seed, "Seed of the synthetic maps")
      ->check(seed())
      ->capture_default_str();
  evaluate
      ->add_option("--data-out", flags->data_out,
                   "Also write the maps as raw uint8 (<workload>.u8) to this existing folder, for "
                   "an external baseline (bench/run_evaluate.sh)")
      ->check(CLI::ExistingDirectory);
  evaluate->callback([flags]() { run_evaluate_benchmark(*flags); });

  CLI::App* predict = command->add_subcommand(
      "predict",
      "Whole-volume inference by tiling with the model of --config-file (random weights) on a\n"
      "random image of --shape with an ellipsoid sampling mask: seconds and peak memory.");
  predict->footer(
      "Example:\n  ssn benchmark predict --config-file "
      "tests/data/reference/rank_10_mc_20_patch_110.json --shape 155,240,240");
  predict->add_option("--config-file", flags->config_file, "JSON config of the model")
      ->required()
      ->check(CLI::ExistingFile);
  predict->add_option("--shape", flags->shape, "Spatial size, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  predict->add_option("--seed", flags->seed, "Seed of weights and image")
      ->check(seed())
      ->capture_default_str();
  predict->add_flag("--json", flags->json, "Print the results as JSON");
  predict->callback([flags]() { run_predict_benchmark(*flags); });

  CLI::App* train_command = command->add_subcommand(
      "train",
      "Training steps (forward, loss, backward, optimiser step) of the model, loss and optimiser\n"
      "of --config-file on one random batch of the config's shapes: seconds per step (median\n"
      "after the warm-up), examples per second and the peak tensor memory of the timed steps "
      "(CPU:\n"
      "ssn's allocation tracker; CUDA: the caching allocator's peak less what was allocated\n"
      "before the timed steps; null where LibTorch has no CUDA statistics).");
  train_command->footer(
      "Example:\n  ssn benchmark train --config-file configs/lidc_unet_rank10.json --steps 5");
  train_command->add_option("--config-file", flags->config_file, "JSON training config")
      ->required()
      ->check(CLI::ExistingFile);
  train_command->add_option("--device", flags->device, "cpu or cuda[:i]")->capture_default_str();
  train_command
      ->add_option("--precision", flags->precision,
                   "fp32, bf16 or fp16 (default: the config's training.precision)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  train_command->add_option("--steps", flags->steps, "Timed steps")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  train_command->add_option("--warmup", flags->warmup, "Untimed steps first")
      ->check(CLI::Range(int64_t{0}, int64_t{100000}))
      ->capture_default_str();
  train_command->add_option("--seed", flags->seed, "Seed of the weights, batch and noise")
      ->check(seed())
      ->capture_default_str();
  train_command->add_flag("--phases", flags->phases,
                          "Also time the forward pass, the loss, the backward pass and the "
                          "optimiser step apart (the device synchronised after each)");
  train_command->add_flag("--json", flags->json, "Print the results as JSON");
  train_command->callback([flags]() { run_train_benchmark(*flags); });

  CLI::App* sample = command->add_subcommand(
      "sample",
      "Sampling a predicted distribution as `ssn sample` and `ssn evaluate` do (float32, a few\n"
      "samples at a time) from random maps of --classes x --shape with a rank --rank factor:\n"
      "seconds per sample and peak memory (bench/sample_reference.py: the reference's sampler).");
  sample->footer(
      "Example:\n  ssn benchmark sample --shape 155,240,240 --rank 10 --classes 4 --num-samples "
      "20");
  sample->add_option("--shape", flags->shape, "Spatial size, comma-separated")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sample->add_option("--rank", flags->rank, "Rank of the covariance factor")
      ->check(CLI::Range(int64_t{0}, int64_t{1000}))
      ->capture_default_str();
  sample->add_option("--classes", flags->classes, "Classes")
      ->check(CLI::Range(int64_t{2}, int64_t{255}))
      ->capture_default_str();
  sample->add_option("--num-samples", flags->num_samples, "Samples to draw")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  sample->add_option("--seed", flags->seed, "Seed of the maps and the noise")
      ->check(seed())
      ->capture_default_str();
  sample->add_flag("--json", flags->json, "Print the results as JSON");
  sample->callback([flags]() { run_sample_benchmark(*flags); });

  CLI::App* elastic = command->add_subcommand(
      "elastic",
      "The reference's elastic deformation (training.augmentation of --config-file) of one\n"
      "training case of --shape with 4 channels, a target and a mask: seconds, peak tensor\n"
      "memory, and the statistics of its displacement field (voxels).");
  elastic->footer(
      "Example:\n  ssn benchmark elastic --config-file "
      "tests/data/reference/rank_10_mc_20_patch_110.json --shape 155,240,240");
  elastic->add_option("--config-file", flags->config_file, "JSON config with the augmentation")
      ->required()
      ->check(CLI::ExistingFile);
  elastic->add_option("--shape", flags->shape, "Spatial size, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  elastic->add_option("--repeats", flags->repeats, "Timed repetitions (the median is reported)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  elastic->add_option("--seed", flags->seed, "Seed of the volume and the offsets")
      ->check(seed())
      ->capture_default_str();
  elastic->add_flag("--json", flags->json, "Print the results as JSON");
  elastic->callback([flags]() { run_elastic_benchmark(*flags); });
}

}  // namespace ssn::cli
