// ssn sample: label-map samples of a predicted distribution, with temperature, class and rank
// weights, or the sweep figures of the paper.

#include <cmath>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "progress.h"
#include "sampling_flags.h"
#include "ssn/evaluation/sampling.h"

namespace ssn::cli {
namespace {

struct SampleFlags {
  std::string predictions;
  std::string out;
  evaluation::SampleFolderOptions options;
  SamplingFlags sampling;
  std::vector<double> rank_weights;
  std::string sweep;
  std::vector<double> sweep_values;
  std::string device = "cpu";
};

void run_sample(SampleFlags& flags) {
  for (double value : flags.rank_weights) {
    if (!std::isfinite(value)) {
      throw CLI::ValidationError("--rank-weights",
                                 "expected finite numbers, got " + std::to_string(value));
    }
  }
  flags.options.device = device_flag(flags.device);
  flags.options.controls = resolve_sampling(flags.predictions, flags.sampling);
  if (!flags.rank_weights.empty()) {
    flags.options.controls.rank_weights = at::tensor(flags.rank_weights, at::kFloat);
  }
  if (!flags.sweep.empty()) {
    try {
      flags.options.sweep = evaluation::Sweep::parse(flags.sweep, flags.sweep_values);
    } catch (const c10::Error& error) {  // the library names the text; the CLI names the flag
      throw CLI::ValidationError("--sweep", error.what_without_backtrace());
    }
  }
  int64_t cases = 0;
  {
    ProgressBar bar("sample");
    cases =
        evaluation::write_samples(flags.predictions, flags.out, flags.options,
                                  [&bar](int64_t done, int64_t total) { bar.update(done, total); });
  }
  if (flags.options.sweep) {
    std::printf("wrote the %s sweep of %lld cases to %s (<id>_sweep_%s.png)\n",
                flags.options.sweep->name().c_str(), static_cast<long long>(cases),
                flags.out.c_str(), flags.options.sweep->name().c_str());
  } else {
    std::printf(
        "wrote %lld samples of each of %lld cases to %s (<id>_s<i>, <id>_l<j>, "
        "<id>_entropy, <id>_frequency)\n",
        static_cast<long long>(flags.options.num_samples), static_cast<long long>(cases),
        flags.out.c_str());
  }
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto flags = std::make_shared<SampleFlags>();
  CLI::App* command = app.add_subcommand(
      "sample",
      "Draw segmentations from a predictions folder (ssn predict): per case --num-samples label\n"
      "maps (PNG in 2-D, NIfTI in 3-D), copies of the annotations (so --out is a samples folder\n"
      "for ssn evaluate --samples), the pixel-wise entropy and class frequency maps. The noise "
      "can\n"
      "be steered: --temperature scales it, --class-weights scales it per class, --rank-weights\n"
      "per rank. --sweep renders one figure per case instead: a row per setting, the same noise\n"
      "in every row. The folder's calibration.json (ssn train / ssn calibrate, carried by ssn\n"
      "predict) applies unless --no-calibration.");
  command->footer(
      "Example:\n  ssn sample --predictions runs/lowrank/predictions --num-samples 16 --out "
      "runs/lowrank/samples\n  ssn sample --predictions runs/lowrank/predictions --num-samples 6 "
      "--sweep class:1 --out sweeps/w");
  command
      ->add_option("--predictions", flags->predictions,
                   "Predictions folder (prediction.csv + mean / cov_diag / cov_factor maps)")
      ->required()
      ->check(CLI::ExistingDirectory);
  command
      ->add_option("--num-samples", flags->options.num_samples,
                   "Samples per case (with --sweep: columns of the figure)")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  command->add_option("--out", flags->out, "Output folder (must not exist or be empty)")
      ->required();
  add_sampling_options(command, flags->sampling);
  command
      ->add_option("--rank-weights", flags->rank_weights,
                   "one factor per rank on the low-rank noise (R values)")
      ->delimiter(',');
  command->add_option("--seed", flags->options.seed, "Case i uses seed + i")
      ->check(seed())
      ->capture_default_str();
  command->add_option("--sweep", flags->sweep,
                      "temperature or class:<c>: write <id>_sweep_<name>.png, one row per value");
  command
      ->add_option("--sweep-values", flags->sweep_values,
                   "Values of the sweep (default: temperature 0,0.5,1,1.5,2; class weight "
                   "-3,-2,-1,0,1,2,3)")
      ->delimiter(',');
  command
      ->add_option("--device", flags->device,
                   "cpu or cuda[:i]: where the logits and labels are computed (the same samples "
                   "either way)")
      ->capture_default_str();
  command->callback([flags]() { run_sample(*flags); });
}

}  // namespace ssn::cli
