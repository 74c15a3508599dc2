// ssn demo: the main job end to end on built-in synthetic data (what `make demo` runs).

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "ssn/demo/demo.h"

namespace ssn::cli {

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<demo::DemoOptions>();
  auto out = std::make_shared<std::string>("out/demo");
  CLI::App* command = app.add_subcommand(
      "demo",
      "The main job on built-in synthetic data, on the CPU: write a lidc-like data set, train a\n"
      "small low-rank SSN and a small deterministic U-Net, predict and evaluate the test split,\n"
      "and write report.html. About 6.5 minutes on 2 cores with the defaults.");
  command->footer("Example:\n  ssn demo --out out/demo");
  command->add_option("--out", *out, "Output folder")->capture_default_str();
  command->add_option("--cases", options->cases, "Synthetic images (80/10/10 % train/val/test)")
      ->check(CLI::Range(int64_t{30}, int64_t{100000}))
      ->capture_default_str();
  command->add_option("--epochs", options->epochs, "Training epochs per model")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  command->add_option("--size", options->size, "Model input side in pixels: 16, 32, 64 or 128")
      ->check(CLI::IsMember({16, 32, 64, 128}))
      ->capture_default_str();
  command->add_option("--eval-samples", options->eval_samples, "Samples per test case")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  command->add_option("--seed", options->seed, "Seed of data, training and sampling")
      ->check(seed())
      ->capture_default_str();
  command->add_flag("--overwrite", options->overwrite,
                    "Replace --out if an earlier ssn demo wrote it");
  command->callback([options, out]() {
    options->out = *out;
    const bool terminal = isatty(2) != 0;
    options->on_stage = [terminal](const std::string& line) {
      if (terminal) std::fprintf(stderr, "\r%80s\r", "");
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    };
    options->on_step = [terminal](const train::StepReport& r) {
      if (!terminal) return;
      std::fprintf(stderr, "\r      epoch %lld  step %lld/%lld  loss %.4f  ETA %.0f s   ",
                   static_cast<long long>(r.epoch + 1), static_cast<long long>(r.step + 1),
                   static_cast<long long>(r.steps), r.loss, r.seconds_left);
    };
    const demo::DemoResult result = demo::run_demo(*options);
    std::printf(
        "test GED (lower is better): low-rank SSN %.4f at its calibrated temperature %.3g "
        "(%.4f at 1), deterministic U-Net %.4f (a perfect model of the annotators: %.4f)\n"
        "sample diversity of the low-rank SSN %.4f (annotators: %.4f)\n"
        "done in %.0f s; open %s in a browser\n",
        result.ged_lowrank, result.temperature, result.ged_lowrank_uncalibrated,
        result.ged_deterministic, result.ged_oracle, result.diversity_lowrank,
        result.annotator_diversity, result.seconds, result.report.c_str());
  });
}

}  // namespace ssn::cli
