// ssn benchmark: throughput of the library's hot paths on synthetic data.

#include <ATen/Parallel.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "ssn/evaluation/benchmark.h"

namespace ssn::cli {
namespace {

struct BenchmarkFlags {
  bool json = false;
  int64_t repeats = 5;
  uint64_t seed = 0;
  std::string data_out;
};

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
  evaluate->add_option("--seed", flags->seed, "Seed of the synthetic maps")->capture_default_str();
  evaluate
      ->add_option("--data-out", flags->data_out,
                   "Also write the maps as raw uint8 (<workload>.u8) to this existing folder, for "
                   "an external baseline (bench/run_evaluate.sh)")
      ->check(CLI::ExistingDirectory);
  evaluate->callback([flags]() { run_evaluate_benchmark(*flags); });
}

}  // namespace ssn::cli
