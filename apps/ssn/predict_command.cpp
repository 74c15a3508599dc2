// ssn predict: a trained model over a split or a CSV of volumes, into a predictions folder.

#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "launch.h"
#include "ssn/config/config.h"
#include "ssn/train/predict.h"

namespace ssn::cli {
namespace {

struct PredictFlags {
  std::string config_file;
  train::PredictOptions options;
  std::string data_dir, test_csv, checkpoint, out;
  bool no_calibration = false;
  int nproc_per_node = 1;
  int master_port = 0;
  int64_t dist_timeout = 1800;
};

}  // namespace

void add_predict_command(CLI::App& app) {
  auto predict_flags = std::make_shared<PredictFlags>();
  CLI::App* predict = app.add_subcommand(
      "predict",
      "Run a trained model on one split of --data-dir, or on every volume of --test-csv-path\n"
      "(whole volumes, tile by tile), and write a predictions folder (mean, cov_diag and\n"
      "cov_factor maps, the argmax, the image, annotations, prediction.csv; NIfTI volumes keep\n"
      "the input's geometry) for ssn evaluate, ssn sample and ssn report. With the config's\n"
      "test.mirror the mean is averaged over the image's mirror images. The checkpoint's\n"
      "calibration.json (if fitted for this checkpoint, with the same test.mirror) is copied\n"
      "into the folder.");
  predict->footer(
      "Examples:\n  ssn predict --config-file runs/lowrank/config.json --checkpoint "
      "runs/lowrank/checkpoint_best.pt --data-dir data/lidc_like --out runs/lowrank/predictions\n"
      "  ssn predict --config-file runs/brats/config.json --checkpoint "
      "runs/brats/checkpoint_best.pt "
      "--test-csv-path data/brats_like/test.csv --out runs/brats/predictions");
  predict->add_option("--config-file", predict_flags->config_file, "The run's JSON config")
      ->required()
      ->check(CLI::ExistingFile);
  predict->add_option("--checkpoint", predict_flags->checkpoint, "checkpoint_best.pt or _last.pt")
      ->required()
      ->check(CLI::ExistingFile);
  auto* predict_data = predict
                           ->add_option("--data-dir", predict_flags->data_dir,
                                        "Folder in the LIDC crops layout (2-D configs)")
                           ->check(CLI::ExistingDirectory);
  auto* predict_csv = predict
                          ->add_option("--test-csv-path", predict_flags->test_csv,
                                       "CSV index of the volumes to predict whole (tiles of "
                                       "test.input_patch_size)")
                          ->check(CLI::ExistingFile);
  predict_data->excludes(predict_csv);
  predict->add_option("--split", predict_flags->options.split, "Split to predict")
      ->capture_default_str();
  predict
      ->add_option("--out", predict_flags->out, "Predictions folder (must not exist or be empty)")
      ->required();
  predict->add_option("--device", predict_flags->options.device, "cpu or cuda[:i]")
      ->capture_default_str();
  predict->add_flag("--no-calibration", predict_flags->no_calibration,
                    "Do not carry the checkpoint's calibration.json into the folder");
  predict
      ->add_option("--nproc-per-node", predict_flags->nproc_per_node,
                   "Shard the cases over this many workers on this machine (as torchrun does); "
                   "under torchrun or Slurm ssn reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR "
                   "and MASTER_PORT. One predictions folder either way (docs/distributed.md)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  predict
      ->add_option("--master-port", predict_flags->master_port,
                   "Rendezvous port of --nproc-per-node (default: a free one)")
      ->check(CLI::Range(1, 65535));
  predict
      ->add_option("--dist-timeout", predict_flags->dist_timeout,
                   "Seconds a rank waits for the others")
      ->check(CLI::Range(int64_t{5}, int64_t{7} * 24 * 3600))
      ->capture_default_str();
  predict->callback([predict_flags]() {
    launch_if_requested(predict_flags->nproc_per_node, predict_flags->master_port);
    const std::shared_ptr<train::Communicator> communicator = communicator_from_environment(
        "gloo", predict_flags->dist_timeout, predict_flags->options.device);
    const config::Config config = config::load_config(predict_flags->config_file);
    train::PredictOptions options = predict_flags->options;
    if (predict_flags->data_dir.empty() && predict_flags->test_csv.empty()) {
      throw CLI::RequiredError("--data-dir or --test-csv-path");
    }
    options.data_dir = predict_flags->data_dir;
    options.test_csv = predict_flags->test_csv;
    options.checkpoint = predict_flags->checkpoint;
    options.out = predict_flags->out;
    options.carry_calibration = !predict_flags->no_calibration;
    options.communicator = communicator.get();
    std::string why_not;
    const auto calibration =
        options.carry_calibration
            ? train::checkpoint_calibration(options.checkpoint, config.test.mirror, &why_not)
            : std::nullopt;
    const int64_t cases = train::predict(config, options);
    if (communicator && communicator->rank() != 0) return;  // rank 0 reports
    std::printf("wrote %lld predictions to %s\n", static_cast<long long>(cases),
                predict_flags->out.c_str());
    if (calibration) {
      std::printf("carried the calibration (%s) into %s/calibration.json\n",
                  evaluation::describe(*calibration).c_str(), predict_flags->out.c_str());
    } else if (!why_not.empty()) {
      std::fprintf(stderr, "ssn: note: uncalibrated predictions: %s\n", why_not.c_str());
    }
  });
}

}  // namespace ssn::cli
