// ssn train: one training run into a job folder (2-D images or patches of volumes).

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "commands.h"
#include "flags.h"
#include "launch.h"
#include "progress.h"
#include "ssn/config/config.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/runtime/threads.h"
#include "ssn/train/distributed.h"
#include "ssn/train/trainer.h"

namespace ssn::cli {
namespace {

struct TrainFlags {
  std::string config_file;
  std::string job_dir;
  std::string data_dir;
  std::string train_csv, valid_csv;
  int64_t num_epochs = -1;
  std::vector<uint64_t> seeds = {0};
  uint64_t seed = 0;  // of the run in job_dir
  bool resume = false;
  std::string device = "cpu";
  int nproc_per_node = 1;
  int master_port = 0;
  std::string dist_backend = "gloo";
  int64_t dist_timeout = 1800;
  // Set in every worker of a distributed launch; null in one process.
  std::shared_ptr<train::Communicator> communicator;
};

// Rank 0 prints; the other ranks of a distributed run stay quiet unless something fails.
bool prints(const TrainFlags& flags) {
  return !flags.communicator || flags.communicator->rank() == 0;
}

void run_train(const TrainFlags& flags) {
  const std::filesystem::path last = std::filesystem::path(flags.job_dir) / "checkpoint_last.pt";
  if (!flags.resume && std::filesystem::exists(last)) {
    throw CLI::ValidationError("--job-dir",
                               flags.job_dir +
                                   " already holds a training run (checkpoint_last.pt);"
                                   " use --resume to continue it or another folder");
  }
  if (flags.resume && !std::filesystem::exists(last)) {
    throw CLI::ValidationError("--resume", "no checkpoint_last.pt in " + flags.job_dir);
  }
  config::Config config;
  if (flags.resume) {
    // A run continues with the config it started with, which its checkpoint was made for.
    config = config::load_config(std::filesystem::path(flags.job_dir) / "config.json");
    if (!flags.config_file.empty()) {
      const std::vector<std::string> changed =
          config::differences(config.source, config::load_config(flags.config_file).source);
      std::string model, other;
      for (const auto& key : changed) {
        std::string& list = key.rfind("/model", 0) == 0 ? model : other;
        list += (list.empty() ? "" : ", ") + key;
      }
      if (!model.empty()) {
        throw CLI::ValidationError("--config-file",
                                   flags.config_file + " changes the model of the job in " +
                                       flags.job_dir + "/config.json (" + model +
                                       "): its checkpoint cannot continue with another model");
      }
      if (!other.empty()) {
        std::fprintf(stderr,
                     "ssn: note: --resume continues with %s/config.json; %s differs in %s, "
                     "which is ignored\n",
                     flags.job_dir.c_str(), flags.config_file.c_str(), other.c_str());
      }
    }
  } else {
    config = config::load_config(flags.config_file);
  }
  if (flags.num_epochs >= 0) config.training.num_epochs = flags.num_epochs;
  train::TrainOptions options;
  options.data.data_dir = flags.data_dir;
  options.data.train_csv = flags.train_csv;
  options.data.valid_csv = flags.valid_csv;
  options.job_dir = flags.job_dir;
  options.seed = flags.seed;
  options.resume = flags.resume;
  options.device = flags.device;
  options.communicator = flags.communicator.get();
  const bool terminal = isatty(2) != 0;
  options.on_step = [terminal](const train::StepReport& r) {
    if (!std::isfinite(r.loss)) {
      std::fprintf(stderr, "\nepoch %lld step %lld: non-finite loss, step skipped\n",
                   static_cast<long long>(r.epoch + 1), static_cast<long long>(r.step + 1));
    }
    if (!terminal) return;
    std::fprintf(stderr, "\repoch %lld  step %lld/%lld  loss %.4f  %.1f images/s  ETA %.0f s   ",
                 static_cast<long long>(r.epoch + 1), static_cast<long long>(r.step + 1),
                 static_cast<long long>(r.steps), r.loss, r.images_per_second, r.seconds_left);
  };
  options.on_calibration = [terminal](int64_t done, int64_t total) {
    if (terminal) {
      std::fprintf(stderr, "\rcalibrating on the validation split: %lld/%lld   ",
                   static_cast<long long>(done), static_cast<long long>(total));
    }
  };
  std::string calibration;
  options.on_calibrated = [&calibration](const evaluation::Calibration& c) {
    calibration = evaluation::describe(c);
  };
  options.on_info = [](const std::string& message) {
    std::printf("%s\n", message.c_str());
    std::fflush(stdout);
  };
  options.on_warning = [terminal](const std::string& message) {
    std::fprintf(stderr, "%swarning: %s\n", terminal ? "\n" : "", message.c_str());
  };
  const auto records = train::train(config, options);
  if (!prints(flags)) return;
  if (terminal) std::fprintf(stderr, "\n");
  const train::EpochRecord* best = nullptr;
  for (const auto& r : records) {
    std::printf("epoch %3lld  train loss %.4f  val loss %.4f  val GED %.4f  lr %.2e  %.1f s%s\n",
                static_cast<long long>(r.epoch), r.train_loss, r.val_loss, r.val_ged, r.lr,
                r.seconds, r.best ? "  *" : "");
    if (r.best) best = &r;
  }
  if (records.empty()) {
    std::printf("config accepted, no epochs to train: wrote %s/config.json\n",
                flags.job_dir.c_str());
    return;
  }
  if (best) {
    const bool by_ged = config.valid.best_criterion == config::BestCriterion::kValGed;
    const bool chosen = config.model.kind == nn::ModelKind::kDeterministic ||
                        best->epoch > config.training.mean_only_epochs;
    if (chosen && std::isfinite(by_ged ? best->val_ged : best->val_loss)) {
      std::printf(
          "checkpoint_best.pt (*): epoch %lld, the lowest validation %s after the warm-up "
          "(valid.best_criterion %s): %.4f\n",
          static_cast<long long>(best->epoch), by_ged ? "GED" : "loss",
          config::to_string(config.valid.best_criterion).c_str(),
          by_ged ? best->val_ged : best->val_loss);
    } else {
      std::printf(
          "checkpoint_best.pt (*): epoch %lld, the last one: no epoch after the mean-only "
          "warm-up was validated\n",
          static_cast<long long>(best->epoch));
    }
  }
  if (!calibration.empty()) {
    std::printf("calibration of checkpoint_best.pt (calibration.json): %s\n", calibration.c_str());
  }
  std::printf("job folder: %s (train_log.csv, checkpoint_last.pt, checkpoint_best.pt%s)\n",
              flags.job_dir.c_str(), calibration.empty() ? "" : ", calibration.json");
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* command = app.add_subcommand(
      "train",
      "Train a segmentation model (U-Net or DeepMedic backbone; deterministic, diagonal SSN or\n"
      "low-rank SSN; all chosen in the config) on 2-D images in the LIDC crops layout\n"
      "(--data-dir) or on patches of CSV-indexed volumes (--train-csv-path, --valid-csv-path, as\n"
      "the reference's BraTS set-up); validation loss and GED every valid.eval_every epochs;\n"
      "checkpoints and train_log.csv in --job-dir; checkpoint_best.pt is the validated epoch\n"
      "after the mean-only warm-up with the lowest validation loss (valid.best_criterion). At\n"
      "the end, the sampling temperature (and class weights, where they pay) of\n"
      "checkpoint_best.pt is fitted on the validation split into calibration.json\n"
      "(valid.calibrate; see ssn calibrate).");
  command->footer(
      "Examples:\n  ssn train --config-file configs/lidc_small_lowrank.json --job-dir runs/lowrank "
      "--data-dir data/lidc_like\n  ssn train --config-file configs/brats_small_lowrank.json "
      "--job-dir runs/brats --train-csv-path data/brats_like/train.csv --valid-csv-path "
      "data/brats_like/valid.csv\n  ssn train --nproc-per-node 2 --config-file "
      "configs/lidc_small_lowrank.json --job-dir runs/lowrank_x2 --data-dir data/lidc_like");
  command
      ->add_option("--config-file", flags->config_file,
                   "JSON config (see configs/); optional with --resume, which continues with the "
                   "job's own config.json (a file that changes the model is refused)")
      ->check(CLI::ExistingFile);
  command->add_option("--job-dir", flags->job_dir, "Output folder of the run")->required();
  auto* data_dir = command
                       ->add_option("--data-dir", flags->data_dir,
                                    "Folder with train/ and val/ in the LIDC crops layout (2-D "
                                    "configs)")
                       ->check(CLI::ExistingDirectory);
  auto* train_csv = command
                        ->add_option("--train-csv-path", flags->train_csv,
                                     "CSV index of the training volumes (configs whose data "
                                     "section names channels)")
                        ->check(CLI::ExistingFile);
  auto* valid_csv =
      command
          ->add_option("--valid-csv-path", flags->valid_csv, "CSV index of the validation volumes")
          ->check(CLI::ExistingFile);
  data_dir->excludes(train_csv)->excludes(valid_csv);
  train_csv->needs(valid_csv);
  valid_csv->needs(train_csv);
  command->add_option("--num-epochs", flags->num_epochs, "Override training.num_epochs")
      ->check(at_least(0));
  command
      ->add_option("--random-seeds", flags->seeds,
                   "Seed of initialisation, batches and noise; several seeds train one job per "
                   "seed, in --job-dir/seed_<s> (as the reference's train.py), one after the other")
      ->check(seed())
      ->expected(1, 1000)
      ->capture_default_str();
  command->add_flag("--resume", flags->resume,
                    "Continue the run in --job-dir from checkpoint_last.pt, with its config.json "
                    "(refused while another run uses the folder)");
  command
      ->add_option("--device", flags->device,
                   "cpu or cuda[:i]; under a distributed launch, cuda means cuda:LOCAL_RANK")
      ->capture_default_str();
  command
      ->add_option("--nproc-per-node", flags->nproc_per_node,
                   "Start this many data-parallel workers on this machine (as torchrun does; "
                   "each gets cores/N threads unless --threads is given). Under torchrun or "
                   "Slurm, ssn reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT "
                   "instead (docs/distributed.md)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command
      ->add_option("--master-port", flags->master_port,
                   "Rendezvous port of --nproc-per-node (default: a free one)")
      ->check(CLI::Range(1, 65535));
  command
      ->add_option("--dist-backend", flags->dist_backend,
                   "Collectives of a distributed run: gloo (CPU and CUDA tensors)")
      ->check(CLI::IsMember({"gloo"}))
      ->capture_default_str();
  command
      ->add_option("--dist-timeout", flags->dist_timeout,
                   "Seconds a rank waits for the others (rendezvous, and while rank 0 validates)")
      ->check(CLI::Range(int64_t{5}, int64_t{7} * 24 * 3600))
      ->capture_default_str();
  command->callback([flags]() {
    launch_if_requested(flags->nproc_per_node, flags->master_port);
    flags->communicator =
        communicator_from_environment(flags->dist_backend, flags->dist_timeout, flags->device);
    if (flags->config_file.empty() && !flags->resume) {
      throw CLI::RequiredError("--config-file");
    }
    if (flags->data_dir.empty() && flags->train_csv.empty()) {
      throw CLI::RequiredError("--data-dir or --train-csv-path with --valid-csv-path");
    }
    const std::set<uint64_t> distinct(flags->seeds.begin(), flags->seeds.end());
    if (distinct.size() != flags->seeds.size()) {
      throw CLI::ValidationError("--random-seeds", "a seed is given twice");
    }
    if (flags->seeds.size() == 1) {
      flags->seed = flags->seeds.front();
      run_train(*flags);
      return;
    }
    for (const uint64_t s : flags->seeds) {
      TrainFlags run = *flags;
      run.seed = s;
      run.job_dir =
          (std::filesystem::path(flags->job_dir) / ("seed_" + std::to_string(s))).string();
      if (prints(run)) {
        std::filesystem::create_directories(run.job_dir);
        std::printf("seed %llu: %s\n", static_cast<unsigned long long>(s), run.job_dir.c_str());
        std::fflush(stdout);
      }
      run_train(run);
    }
  });
}

}  // namespace ssn::cli
