#include "ssn/train/calibrate.h"

#include <unistd.h>

#include "ssn/train/model_factory.h"
#include "ssn/train/predict.h"

namespace ssn::train {
namespace fs = std::filesystem;
namespace {

// A folder of the job that exists while calibrating: a staging name (io/atomic_file.h), so that
// what a killed run leaves is recognised and removed by the next run in the job.
class ScratchFolder {
 public:
  explicit ScratchFolder(const fs::path& job_dir)
      : path_(job_dir / ("calibration.ssn-partial-" + std::to_string(::getpid()))) {
    std::error_code error;
    fs::remove_all(path_, error);  // a folder of this very process's name: its own leftover
    fs::create_directories(path_, error);
    TORCH_CHECK(!error, "cannot create ", path_.string(), ": ", error.message());
  }
  ~ScratchFolder() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The annotators' diversity over the training and validation splits, read as the loader crops and
// resizes them. A data folder without a train split (calibrating a job on its validation cases
// alone) gives the validation split's.
std::pair<double, int64_t> train_and_val_annotator_diversity(const config::Config& config,
                                                             const fs::path& data_dir) {
  std::vector<data::LidcDataset> splits;
  for (const std::string split : {"train", "val"}) {
    if (split == "train" && !fs::exists(data_dir / split)) continue;
    splits.emplace_back(data_dir, split, lidc_options(config.data));
  }
  std::vector<const data::LidcDataset*> pointers;
  for (const auto& split : splits) pointers.push_back(&split);
  return annotator_diversity(pointers, config.model.num_classes);
}

}  // namespace

std::pair<double, int64_t> annotator_diversity(const std::vector<const data::LidcDataset*>& splits,
                                               int64_t num_classes) {
  double sum = 0.0;
  int64_t count = 0;
  for (const data::LidcDataset* split : splits) {
    for (int64_t i = 0; i < split->size(); ++i) {
      sum += evaluation::annotator_diversity_of((*split)[i].annotations, num_classes);
      ++count;
    }
  }
  return {count > 0 ? sum / static_cast<double>(count) : 0.0, count};
}

evaluation::Calibration calibrate_job(const config::Config& config, const CalibrateOptions& options,
                                      const runtime::Progress& progress) {
  TORCH_CHECK(config.model.kind != nn::ModelKind::kDeterministic,
              "a deterministic model has no distribution to calibrate");
  const fs::path checkpoint = options.job_dir / options.checkpoint;
  TORCH_CHECK(fs::is_regular_file(checkpoint), "cannot calibrate: no ", options.checkpoint, " in ",
              options.job_dir.string());
  const bool volumes = config.data.dataset == config::Dataset::kCsv;
  TORCH_CHECK(!volumes || !options.data.valid_csv.empty(),
              "calibration of CSV-indexed volumes needs the validation CSV (--valid-csv-path)");
  TORCH_CHECK(volumes || !options.data.data_dir.empty(),
              "calibration of the LIDC crops layout needs --data-dir");
  const ScratchFolder scratch(options.job_dir);
  PredictOptions predict_options;
  predict_options.data_dir = options.data.data_dir;
  predict_options.split = "val";
  predict_options.test_csv = options.data.valid_csv;
  predict_options.checkpoint = checkpoint;
  predict_options.out = scratch.path() / "predictions";
  predict_options.device = options.device;
  predict_options.max_cases = config.valid.num_cases;
  predict_options.carry_calibration = false;
  predict(config, predict_options);

  evaluation::CalibrationOptions fit;
  fit.num_samples =
      options.num_samples > 0 ? options.num_samples : config.valid.calibration_samples;
  fit.seed = options.seed;
  fit.max_diversity_ratio = options.max_diversity_ratio >= 0
                                ? options.max_diversity_ratio
                                : config.valid.calibration_max_diversity_ratio;
  fit.avoid_whole_image = config.valid.calibration_avoid_whole_image && !options.allow_whole_image;
  if (!volumes && config.valid.calibration_band_on_train_and_val && fit.max_diversity_ratio > 0) {
    fit.band_reference = options.band_reference
                             ? *options.band_reference
                             : train_and_val_annotator_diversity(config, options.data.data_dir);
  }
  evaluation::Calibration calibration =
      evaluation::fit_calibration(predict_options.out, fit, progress);
  calibration.mirror = config.test.mirror;
  calibration.checkpoint_name = options.checkpoint;
  std::tie(calibration.checkpoint_size, calibration.checkpoint_crc) =
      evaluation::file_identity(checkpoint);
  evaluation::write_calibration(options.job_dir / evaluation::kCalibrationFile, calibration);
  return calibration;
}

}  // namespace ssn::train
