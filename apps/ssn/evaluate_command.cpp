// ssn evaluate: distribution metrics (GED, diversity, HM-IoU, Dice, NCC, ECE) of segmentation
// samples against annotations, per case and summarised.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "progress.h"
#include "sampling_flags.h"
#include "ssn/evaluation/evaluate.h"

namespace ssn::cli {
namespace {

struct EvaluateFlags {
  std::string samples;
  std::string predictions;
  std::string out;
  bool classes_given = false;
  evaluation::EvaluationOptions options;
  evaluation::SamplingOptions sampling;
  SamplingFlags controls;
  std::string device = "cpu";
};

void run_evaluate(EvaluateFlags& flags) {
  if (!flags.predictions.empty() && !flags.classes_given) {
    flags.options.num_classes = evaluation::classes_of_prediction_folder(flags.predictions);
    std::printf("%lld classes (the channels of the mean maps)%s\n",
                static_cast<long long>(flags.options.num_classes),
                flags.options.num_classes == 4 && !flags.options.brats_regions
                    ? "; for BraTS labels, --brats-regions adds the Dice of whole tumour, tumour "
                      "core and enhancing tumour"
                    : "");
  }
  if (!flags.predictions.empty()) {
    flags.sampling.controls = resolve_sampling(flags.predictions, flags.controls);
    flags.sampling.device = device_flag(flags.device);
  }
  std::vector<evaluation::CaseResult> results;
  const auto start = std::chrono::steady_clock::now();
  {
    ProgressBar bar("evaluate");
    const auto update = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
    results = flags.predictions.empty()
                  ? evaluation::evaluate_sample_folder(flags.samples, flags.options, update)
                  : evaluation::evaluate_prediction_folder(flags.predictions, flags.options,
                                                           flags.sampling, update);
  }
  const nlohmann::json summary = evaluation::write_evaluation(
      flags.out, results,
      flags.predictions.empty() ? nlohmann::json()
                                : evaluation::controls_json(flags.sampling.controls));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "evaluated " << results.size() << " cases from "
            << (flags.predictions.empty() ? flags.samples : flags.predictions) << " in " << seconds
            << " s (reading, scoring and writing)\n";
  for (const auto& [name, value] : results.front().metrics) {
    const auto& entry = summary["metrics"][name];
    const double mean = entry["mean"].is_null() ? NAN : entry["mean"].get<double>();
    const double stderr_ = entry["stderr"].is_null() ? NAN : entry["stderr"].get<double>();
    std::printf("  %-20s %.4f +- %.4f\n", name.c_str(), mean, stderr_);
  }
  std::fflush(stdout);
  std::cout << "wrote " << flags.out << "/metrics.csv and " << flags.out << "/summary.json\n";
}

}  // namespace

void add_evaluate_command(CLI::App& app) {
  auto flags = std::make_shared<EvaluateFlags>();
  CLI::App* command = app.add_subcommand(
      "evaluate",
      "Score a predicted distribution of segmentations against the annotations: GED, sample and\n"
      "annotator diversity, HM-IoU, Dice per class (and BraTS regions), NCC, class-wise ECE and,\n"
      "for --predictions, Dice of the mean and the log-likelihood of the annotations; per case in\n"
      "OUT/metrics.csv and as mean +- standard error in OUT/summary.json. --predictions samples\n"
      "with the folder's calibration.json unless --no-calibration (--temperature, --class-weights\n"
      "override it); summary.json records the controls used.");
  command->footer(
      "Example:\n  ssn evaluate --predictions runs/lowrank/predictions --out "
      "runs/lowrank/evaluation");
  auto* predictions =
      command
          ->add_option("--predictions", flags->predictions,
                       "Predictions folder (prediction.csv + per-case mean / cov_diag / "
                       "cov_factor maps): draws --num-samples samples per case")
          ->check(CLI::ExistingDirectory);
  auto* samples =
      command
          ->add_option("--samples", flags->samples,
                       "Folder of label maps: <case>_s<i>.png|.nii.gz (samples, i from 0) and "
                       "<case>_l<j>.png|.nii.gz (annotations, j from 1)")
          ->check(CLI::ExistingDirectory);
  predictions->excludes(samples);
  command
      ->add_option("--num-samples", flags->sampling.num_samples,
                   "Samples drawn per case (--predictions)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  command->add_option("--seed", flags->sampling.seed, "Seed of the sampling (--predictions)")
      ->check(seed())
      ->capture_default_str();
  add_sampling_options(command, flags->controls);
  command->add_option("--out", flags->out, "Output folder (created if missing)")->required();
  command
      ->add_option("--num-classes", flags->options.num_classes,
                   "K, background included; with 2, any non-zero value is foreground (0/255 "
                   "masks), otherwise values are class indices. Default: the channels of the "
                   "mean maps (--predictions), 2 (--samples)")
      ->check(CLI::Range(2, 256))
      ->each([flags](const std::string&) { flags->classes_given = true; });
  command
      ->add_option("--device", flags->device,
                   "cpu or cuda[:i]: where the sampled logits are computed (--predictions; the "
                   "same samples either way)")
      ->capture_default_str();
  command->add_flag("--brats-regions", flags->options.brats_regions,
                    "Also Dice of whole tumour {1,2,3}, tumour core {1,3} and enhancing {3} "
                    "(needs --num-classes 4)");
  command->callback([flags]() {
    if (flags->samples.empty() && flags->predictions.empty()) {
      throw CLI::RequiredError("--predictions or --samples");
    }
    if (flags->predictions.empty() &&
        (flags->controls.temperature_given || !flags->controls.class_weights.empty() ||
         flags->controls.no_calibration || flags->device != "cpu")) {
      throw CLI::ValidationError("--temperature / --class-weights / --no-calibration / --device",
                                 "apply to --predictions only (--samples are label maps)");
    }
    run_evaluate(*flags);
  });
}

}  // namespace ssn::cli
