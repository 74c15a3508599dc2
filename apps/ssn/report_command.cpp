// ssn report: one self-contained report.html from job folders.

#include <cstdio>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "ssn/report/report.h"

namespace ssn::cli {

void add_report_command(CLI::App& app) {
  auto options = std::make_shared<report::ReportOptions>();
  auto job_dirs = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "report",
      "Write one self-contained HTML page (no server or network needed) for one or more job\n"
      "folders: test metrics side by side (JOB/evaluation/summary.json), learning curves\n"
      "(JOB/train_log.csv), and for the first test cases (JOB/predictions) the image, the\n"
      "annotations, the mean prediction, samples and the pixel-wise entropy, plus temperature and\n"
      "class-weight sweeps for stochastic models; the calibration (JOB/calibration.json) and,\n"
      "unless --no-calibration, samples drawn with the one the predictions folder carries.");
  command->footer(
      "Example:\n  ssn report --job-dir runs/lowrank --job-dir runs/deterministic --out "
      "runs/report.html");
  command
      ->add_option("--job-dir", *job_dirs,
                   "Job folder of ssn train (repeat to compare models in one page); a folder of "
                   "seed_<s> runs (train --random-seeds s1 s2 ...) shows them with mean +- SD over "
                   "the seeds")
      ->required()
      ->check(CLI::ExistingDirectory);
  command->add_option("--out", *out, "HTML file (default: <first job dir>/report.html)");
  command->add_option("--num-cases", options->num_cases, "Test cases shown per job")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  command->add_option("--num-samples", options->num_samples, "Samples shown per case")
      ->check(CLI::Range(int64_t{1}, int64_t{64}))
      ->capture_default_str();
  command->add_option("--seed", options->seed, "Seed of the samples")
      ->check(seed())
      ->capture_default_str();
  command->add_flag("--no-calibration", options->no_calibration,
                    "Draw the samples at temperature 1, ignoring JOB/predictions/calibration.json");
  command->callback([options, job_dirs, out]() {
    options->job_dirs.assign(job_dirs->begin(), job_dirs->end());
    options->out = *out;
    const auto path = report::write_report(*options);
    std::printf("wrote %s\n", path.c_str());
  });
}

}  // namespace ssn::cli
