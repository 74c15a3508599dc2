// ssn calibrate: the sampling temperature (and class weights) of an existing job, fitted on its
// validation split into calibration.json.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "progress.h"
#include "ssn/config/config.h"
#include "ssn/io/atomic_file.h"
#include "ssn/train/calibrate.h"

namespace ssn::cli {
namespace {

struct CalibrateFlags {
  train::CalibrateOptions options;
  std::string job_dir, data_dir, valid_csv;
};

void run_calibrate(const CalibrateFlags& flags) {
  namespace fs = std::filesystem;
  const fs::path job(flags.job_dir);
  if (!fs::exists(job / "config.json")) {
    throw CLI::ValidationError("--job-dir",
                               flags.job_dir + " has no config.json: not a job folder");
  }
  const config::Config config = config::load_config(job / "config.json");
  if (config.model.kind == nn::ModelKind::kDeterministic) {
    throw CLI::ValidationError("--job-dir", flags.job_dir +
                                                " holds a deterministic model: it has no "
                                                "distribution to calibrate");
  }
  train::CalibrateOptions options = flags.options;
  options.job_dir = job;
  options.data.data_dir = flags.data_dir;
  options.data.valid_csv = flags.valid_csv;
  const io::FolderLock lock(job, "job folder");
  io::remove_leftovers(job);
  evaluation::Calibration calibration;
  {
    ProgressBar bar("calibrate");
    calibration = train::calibrate_job(
        config, options, [&bar](int64_t done, int64_t total) { bar.update(done, total); });
  }
  std::printf("%s: %s\nwrote %s\n", options.checkpoint.c_str(),
              evaluation::describe(calibration).c_str(),
              (job / evaluation::kCalibrationFile).c_str());
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  auto flags = std::make_shared<CalibrateFlags>();
  CLI::App* command = app.add_subcommand(
      "calibrate",
      "Fit the sampling temperature of a trained job on its validation split: the value, on a\n"
      "grid of 0.2 .. 3 refined to 0.05, that minimises the validation GED among those whose\n"
      "sample diversity stays within a band around the annotators' (the first valid.num_cases\n"
      "cases, the same noise for every value; in the LIDC layout the annotators' diversity is\n"
      "measured over every training and validation image, valid.calibration_band_reference),\n"
      "then per-class weights on the noise where they lower it by more than twice their\n"
      "standard error. Writes JOB/calibration.json; ssn predict carries it into the predictions\n"
      "folder, where sample, evaluate and report apply it. ssn train does this at its end\n"
      "(valid.calibrate).");
  command->footer(
      "Examples:\n  ssn calibrate --job-dir runs/lowrank --data-dir data/lidc_like\n"
      "  ssn calibrate --job-dir runs/brats --valid-csv-path data/brats_like/valid.csv");
  command->add_option("--job-dir", flags->job_dir, "Job folder of ssn train")
      ->required()
      ->check(CLI::ExistingDirectory);
  auto* data_dir = command
                       ->add_option("--data-dir", flags->data_dir,
                                    "Folder in the LIDC crops layout: its val split is used")
                       ->check(CLI::ExistingDirectory);
  auto* valid_csv = command
                        ->add_option("--valid-csv-path", flags->valid_csv,
                                     "CSV index of the validation volumes (predicted whole)")
                        ->check(CLI::ExistingFile);
  data_dir->excludes(valid_csv);
  command
      ->add_option("--checkpoint", flags->options.checkpoint,
                   "Checkpoint file of the job to calibrate (predict carries the calibration only "
                   "for a checkpoint with these bytes)")
      ->capture_default_str();
  command
      ->add_option("--num-samples", flags->options.num_samples,
                   "Samples per case for each setting (default: valid.calibration_samples, 100)")
      ->check(CLI::Range(int64_t{2}, int64_t{100000}));
  command
      ->add_option("--max-diversity-ratio", flags->options.max_diversity_ratio,
                   "Keep the validation diversity within [1/R, R] times the annotators' (R >= 1; "
                   "0: GED alone; default: valid.calibration_max_diversity_ratio, 1.25)")
      ->check(zero_or_at_least_one());
  command->add_flag("--allow-whole-image-samples", flags->options.allow_whole_image,
                    "Do not prefer the settings that draw no whole-image sample (foreground over "
                    "half the image where no annotation marks a fifth of it; default: "
                    "valid.calibration_avoid_whole_image, true)");
  command->add_option("--seed", flags->options.seed, "Seed of the noise (case i uses seed + i)")
      ->check(seed())
      ->capture_default_str();
  command->add_option("--device", flags->options.device, "cpu or cuda[:i]")->capture_default_str();
  command->callback([flags]() {
    if (flags->data_dir.empty() && flags->valid_csv.empty()) {
      throw CLI::RequiredError("--data-dir or --valid-csv-path");
    }
    if (flags->options.checkpoint.find('/') != std::string::npos) {
      throw CLI::ValidationError("--checkpoint", "expected a file name of the job folder, got " +
                                                     flags->options.checkpoint);
    }
    run_calibrate(*flags);
  });
}

}  // namespace ssn::cli
