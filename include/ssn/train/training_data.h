#pragma once

// What the training loop needs from a data set, behind one interface: the batches of an epoch and
// a validation pass. Each data source is one file (lidc_training_data.cpp: 2-D images in the LIDC
// crops layout; volume_training_data.cpp: patches of CSV-indexed volumes); make_training_data
// chooses one from the config.

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "ssn/config/config.h"
#include "ssn/data/lidc.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/nn/segmentation_model.h"

namespace ssn::train {

/// Mean loss and mean GED of one validation pass.
struct Validation {
  double loss = 0.0;
  double ged = 0.0;
};

class TrainingData {
 public:
  virtual ~TrainingData() = default;
  /// Plans one epoch, drawing from `generator` (which must outlive the epoch); returns its number
  /// of steps.
  virtual int64_t begin_epoch(at::Generator& generator) = 0;
  /// The next batch of the epoch.
  virtual data::TrainingBatch next() = 0;
  /// Called after the last step, before the generator's state is saved.
  virtual void end_epoch() = 0;
  virtual int64_t batch_size() const = 0;
  /// Each class's share of the training annotations' pixels (model.mean_bias_init
  /// "class_frequencies"), classes 0 .. num_classes - 1; errors for a data source that cannot
  /// tell.
  virtual std::vector<double> class_frequencies(int64_t num_classes) const;
  /// The annotators' diversity over every training and validation image, and their number (the
  /// calibration band's reference, CalibrateOptions::band_reference); none for a data source
  /// that does not hold several annotations of whole images.
  virtual std::optional<std::pair<double, int64_t>> annotator_diversity(int64_t num_classes) const {
    (void)num_classes;
    return std::nullopt;
  }
  /// Voxels of one example's input and of the model's output for it (to size a step's memory).
  virtual std::pair<int64_t, int64_t> example_voxels() const = 0;
  /// Scores `model` (in eval mode, gradients off) on the validation cases, with the same cases and
  /// noise every time so that epochs compare.
  virtual Validation validate(nn::SegmentationModel& model, const loss::SegmentationLoss& loss_fn,
                              torch::Device device) = 0;
};

/// Where the data of a run are (the flags of `ssn train`).
struct DataPaths {
  /// The LIDC crops layout (2-D configs) ...
  std::filesystem::path data_dir;
  /// ... or the reference's CSV index files (configs whose data section names channels).
  std::filesystem::path train_csv, valid_csv;
};

/// The data source of config.data.dataset, reading from `paths`; errors say which path is
/// missing. `backbone` gives the patch sizes of volume training.
std::unique_ptr<TrainingData> make_training_data(const config::Config& config,
                                                 const DataPaths& paths,
                                                 const nn::BackboneImpl& backbone);

/// The data sources (one file each).
std::unique_ptr<TrainingData> make_lidc_training_data(const config::Config& config,
                                                      const std::filesystem::path& data_dir);
std::unique_ptr<TrainingData> make_volume_training_data(const config::Config& config,
                                                        const std::filesystem::path& train_csv,
                                                        const std::filesystem::path& valid_csv,
                                                        const nn::BackboneImpl& backbone);

/// The validation score of a model's output for a batch (as score_batch, without the forward
/// pass).
Validation score_output(const nn::ModelOutput& out, const at::Tensor& targets,
                        const std::vector<at::Tensor>& annotations, const config::Config& config,
                        const loss::SegmentationLoss& loss_fn, at::Generator& generator);

/// Example b of a batch's output, as the output of a batch of one.
nn::ModelOutput example_output(const nn::ModelOutput& out, int64_t b);

/// The validation score of one batch, summed over it: the loss of images [B, I, *spatial]
/// against targets [B, *spatial] (mask [B, *spatial] or undefined), and the GED of
/// config.valid.num_samples samples against annotations[b] [M, *spatial]. Sampling and scoring
/// run on the CPU with `generator`.
Validation score_batch(nn::SegmentationModel& model, const at::Tensor& images,
                       const at::Tensor& targets, const at::Tensor& masks,
                       const std::vector<at::Tensor>& annotations, const config::Config& config,
                       const loss::SegmentationLoss& loss_fn, torch::Device device,
                       at::Generator& generator);

}  // namespace ssn::train
