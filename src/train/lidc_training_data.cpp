#include <ATen/CPUGeneratorImpl.h>

#include "ssn/train/calibrate.h"
#include "ssn/train/model_factory.h"
#include "ssn/train/training_data.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;

// 2-D images in the LIDC crops layout: the train split in random batches (one annotator drawn per
// example, or all of them with data.train_targets "all_annotators"; flips and turns), assembled two
// ahead on a background thread; the first valid.num_cases images of the val split for validation,
// scored against all their annotations.
class LidcData : public TrainingData {
 public:
  LidcData(const config::Config& config, const fs::path& data_dir)
      : config_(config),
        train_(data_dir, "train", lidc_options(config.data)),
        valid_(data_dir, "val", lidc_options(config.data)),
        batch_size_(std::min(config.training.batch_size, train_.size())) {}

  int64_t begin_epoch(at::Generator& generator) override {
    const int64_t n = train_.size();
    const int64_t steps = n / batch_size_;  // the last incomplete batch is dropped
    const at::Tensor order = at::randperm(n, generator, at::kLong);
    std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps));
    for (int64_t step = 0; step < steps; ++step) {
      for (int64_t b = 0; b < batch_size_; ++b) {
        batches[step].push_back(order[step * batch_size_ + b].item<int64_t>());
      }
    }
    const data::LidcAugmentation augmentation =
        !config_.training.augment               ? data::LidcAugmentation::kNone
        : config_.data.augmentation == "phiseg" ? data::LidcAugmentation::kPhiseg
                                                : data::LidcAugmentation::kFlipsAndTurns;
    prefetcher_ = std::make_unique<data::BatchPrefetcher>(train_, std::move(batches), generator,
                                                          augmentation, all_annotators());
    return steps;
  }
  data::TrainingBatch next() override { return prefetcher_->next(); }
  void end_epoch() override { prefetcher_.reset(); }  // joined: the generator is at the epoch's end
  int64_t batch_size() const override { return batch_size_; }
  std::vector<double> class_frequencies(int64_t num_classes) const override {
    // Every annotator's mask of every training image, as the loss sees them on average.
    at::Tensor counts = at::zeros({num_classes}, at::kDouble);
    for (int64_t i = 0; i < train_.size(); ++i) {
      const at::Tensor labels = train_[i].annotations.flatten();
      TORCH_CHECK(labels.max().item<int64_t>() < num_classes, "training image ", train_[i].id,
                  ": an annotation has label ", labels.max().item<int64_t>(),
                  ", but model.num_classes is ", num_classes);
      counts += at::bincount(labels, {}, num_classes).to(at::kDouble);
    }
    counts /= counts.sum();
    return std::vector<double>(counts.data_ptr<double>(), counts.data_ptr<double>() + num_classes);
  }
  std::optional<std::pair<double, int64_t>> annotator_diversity(
      int64_t num_classes) const override {
    return train::annotator_diversity({&train_, &valid_}, num_classes);
  }
  std::pair<int64_t, int64_t> example_voxels() const override {
    const int64_t pixels = config_.data.size * config_.data.size;
    return {pixels, pixels};
  }

  Validation validate(nn::SegmentationModel& model, const loss::SegmentationLoss& loss_fn,
                      torch::Device device) override {
    at::Generator generator = at::detail::createCPUGenerator(12345);  // the same noise every time
    const int64_t cases = std::min(config_.valid.num_cases, valid_.size());
    Validation total;
    // The network sees valid.batch_size images at a time; each image's loss and samples then draw
    // their noise in turn, as for a batch of one (the figures do not depend on the batch size).
    const int64_t chunk = config_.valid.batch_size;
    for (int64_t first = 0; first < cases; first += chunk) {
      const int64_t count = std::min(chunk, cases - first);
      std::vector<at::Tensor> images;
      for (int64_t i = first; i < first + count; ++i) images.push_back(valid_[i].image);
      const nn::ModelOutput out = model->forward(at::stack(images).to(device), at::Tensor());
      for (int64_t b = 0; b < count; ++b) {
        const auto& example = valid_[first + b];
        // The loss against the first annotator, or against all of them as the training sees
        // them.
        const at::Tensor target = all_annotators() ? example.annotations : example.annotations[0];
        const Validation v = score_output(example_output(out, b), target.unsqueeze(0),
                                          {example.annotations}, config_, loss_fn, generator);
        total.loss += v.loss;
        total.ged += v.ged;
      }
    }
    return {total.loss / static_cast<double>(cases), total.ged / static_cast<double>(cases)};
  }

 private:
  bool all_annotators() const { return config_.data.train_targets == "all_annotators"; }

  const config::Config& config_;
  data::LidcDataset train_, valid_;
  int64_t batch_size_;
  std::unique_ptr<data::BatchPrefetcher> prefetcher_;
};

}  // namespace

std::unique_ptr<TrainingData> make_lidc_training_data(const config::Config& config,
                                                      const std::filesystem::path& data_dir) {
  return std::make_unique<LidcData>(config, data_dir);
}

}  // namespace ssn::train
