#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cstdio>

#include "ssn/data/elastic.h"
#include "ssn/data/volumes.h"
#include "ssn/train/model_factory.h"
#include "ssn/train/training_data.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;

// Patch geometry and augmentation from the config; axes count spatial axes from 0 in tensor order
// (z, y, x), as the reference's augmentation does on SimpleITK arrays.
data::PatchOptions patch_options(const config::Config& config, std::vector<int64_t> input,
                                 const nn::BackboneImpl& backbone) {
  const auto dims = static_cast<size_t>(config.model.dimensions);
  if (input.empty()) input.assign(dims, backbone.input_size_for(1));
  TORCH_CHECK(input.size() == dims, "input_patch_size must have ", dims,
              " sizes (one per spatial axis), got ", input.size());
  data::PatchOptions o;
  o.input_size = input;
  for (int64_t size : input) o.output_size.push_back(backbone.output_size(size));
  const auto& t = config.training;
  o.foreground_probability = t.foreground_probability;
  o.n_tries = t.n_tries;
  if (t.augment) {
    o.flip_probability = t.flip_probability;
    o.flip_axes = t.flip_axes;
    o.rotation_probability = t.rotation_probability;
    for (const auto& plane : t.rotation_planes) o.rotation_planes.emplace_back(plane[0], plane[1]);
    o.histogram_probability = t.histogram_probability;
  }
  return o;
}

// Patches of volumes (the reference's DeepMedic training): an epoch draws patches_per_image
// patches from each of images_per_epoch cases, loading at most max_cases_in_memory cases at once
// (in parallel) and shuffling the patches of each group of cases.
class VolumeData : public TrainingData {
 public:
  VolumeData(const config::Config& config, const fs::path& train_csv, const fs::path& valid_csv,
             const nn::BackboneImpl& backbone)
      : config_(config),
        train_(data::read_case_csv(train_csv, csv_columns(config.data))),
        valid_(data::read_case_csv(valid_csv, csv_columns(config.data))) {
    train_patch_ = patch_options(config, config.training.input_patch_size, backbone);
    valid_patch_ =
        patch_options(config,
                      config.valid.input_patch_size.empty() ? train_patch_.input_size
                                                            : config.valid.input_patch_size,
                      backbone);
    valid_patch_.flip_probability = valid_patch_.rotation_probability =
        valid_patch_.histogram_probability = 0.0;
    const auto& t = config.training;
    if (t.augment && t.elastic_probability > 0 && config.model.dimensions == 2) {
      std::fprintf(stderr,
                   "ssn: warning: training.augmentation.RandomElasticDeformationCoarsePerlinNoise "
                   "is implemented for volumes (3 spatial axes) only; this 2-D model trains "
                   "without it\n");
    } else if (t.augment && t.elastic_probability > 0) {
      data::ElasticOptions elastic;
      elastic.probability = t.elastic_probability;
      elastic.period = t.elastic_period;
      elastic.alpha = t.elastic_alpha;
      elastic.noise_shape = t.elastic_noise_shape;
      noise_ = std::make_unique<data::ElasticField>(elastic);
    }
  }

  int64_t begin_epoch(at::Generator& generator) override {
    const int64_t cases = config_.training.images_per_epoch;
    const at::Tensor order =
        at::randint(static_cast<int64_t>(train_.size()), {cases}, generator, at::kLong);
    epoch_cases_.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + cases);
    next_case_ = 0;
    generator_ = &generator;
    pending_.clear();
    const int64_t patches = cases * config_.training.patches_per_image;
    return std::max<int64_t>(1, patches / batch_size());
  }

  data::TrainingBatch next() override {
    if (static_cast<int64_t>(pending_.size()) < batch_size()) load_group();
    std::vector<PendingPatch> chosen;
    for (int64_t b = 0; b < batch_size() && !pending_.empty(); ++b) {
      chosen.push_back(std::move(pending_.back()));
      pending_.pop_back();
    }
    return make_batch(chosen, train_patch_);
  }
  void end_epoch() override { pending_.clear(); }
  int64_t batch_size() const override { return config_.training.batch_size; }
  std::pair<int64_t, int64_t> example_voxels() const override {
    int64_t input = 1, output = 1;
    for (size_t d = 0; d < train_patch_.input_size.size(); ++d) {
      input *= train_patch_.input_size[d];
      output *= train_patch_.output_size[d];
    }
    return {input, output};
  }

  Validation validate(nn::SegmentationModel& model, const loss::SegmentationLoss& loss_fn,
                      torch::Device device) override {
    // The same cases, patches and noise every time.
    at::Generator generator = at::detail::createCPUGenerator(12345);
    const int64_t cases =
        std::min<int64_t>(config_.valid.images_per_epoch, static_cast<int64_t>(valid_.size()));
    Validation total;
    int64_t count = 0;
    for (int64_t start = 0; start < cases; start += config_.valid.max_cases_in_memory) {
      const int64_t end = std::min(cases, start + config_.valid.max_cases_in_memory);
      std::vector<int64_t> indices;
      for (int64_t i = start; i < end; ++i) indices.push_back(i);
      const std::vector<PendingPatch> patches =
          draw_patches(valid_, indices, config_.valid.patches_per_image, valid_patch_, generator);
      const auto step = static_cast<size_t>(config_.valid.batch_size);
      for (size_t first = 0; first < patches.size(); first += step) {
        const std::vector<PendingPatch> chosen(
            patches.begin() + static_cast<int64_t>(first),
            patches.begin() + static_cast<int64_t>(std::min(patches.size(), first + step)));
        const data::TrainingBatch batch = make_batch(chosen, valid_patch_);
        std::vector<at::Tensor> annotations;
        for (int64_t b = 0; b < batch.targets.size(0); ++b) {
          annotations.push_back(batch.targets[b].unsqueeze(0));
        }
        const Validation v = score_batch(model, batch.images, batch.targets, batch.masks,
                                         annotations, config_, loss_fn, device, generator);
        total.loss += v.loss;
        total.ged += v.ged;
        count += batch.targets.size(0);
      }
    }
    return {total.loss / static_cast<double>(count), total.ged / static_cast<double>(count)};
  }

 private:
  // A patch not cut yet: its volume (kept alive while patches of it wait) and its random spec.
  struct PendingPatch {
    std::shared_ptr<const data::Volume> volume;
    data::PatchSpec spec;
  };

  // Patches are cut from their volumes only when their batch is due, so memory holds the volumes
  // of one group and one batch of patches.
  static data::TrainingBatch make_batch(const std::vector<PendingPatch>& chosen,
                                        const data::PatchOptions& options) {
    std::vector<at::Tensor> images, targets, masks;
    for (const auto& pending : chosen) {
      const data::Patch patch = data::make_patch(*pending.volume, pending.spec, options);
      images.push_back(patch.image);
      targets.push_back(patch.target);
      masks.push_back(patch.mask);
    }
    return {at::stack(images), at::stack(targets), at::stack(masks)};
  }

  // Loads the next group of the epoch's cases in parallel and draws their patches, shuffled.
  void load_group() {
    std::vector<int64_t> indices;
    while (next_case_ < static_cast<int64_t>(epoch_cases_.size()) &&
           static_cast<int64_t>(indices.size()) < config_.training.max_cases_in_memory) {
      indices.push_back(epoch_cases_[next_case_++]);
    }
    TORCH_CHECK(!indices.empty() || !pending_.empty(), "internal: the epoch ran out of patches");
    if (indices.empty()) return;
    std::vector<PendingPatch> patches =
        draw_patches(train_, indices, config_.training.patches_per_image, train_patch_, *generator_,
                     /*deform=*/true);
    const at::Tensor order =
        at::randperm(static_cast<int64_t>(patches.size()), *generator_, at::kLong);
    std::vector<PendingPatch> shuffled;
    for (int64_t i = 0; i < order.numel(); ++i) {
      shuffled.push_back(patches[order[i].item<int64_t>()]);
    }
    shuffled.insert(shuffled.end(), pending_.begin(), pending_.end());
    pending_ = std::move(shuffled);
  }

  // Loads the cases (in parallel: decoding NIfTI dominates) then draws their patches in order,
  // so the patches do not depend on the thread count.
  std::vector<PendingPatch> draw_patches(const std::vector<data::VolumeCase>& cases,
                                         const std::vector<int64_t>& indices, int64_t per_case,
                                         const data::PatchOptions& options,
                                         at::Generator& generator, bool deform = false) {
    std::vector<std::shared_ptr<data::Volume>> volumes(indices.size());
    at::parallel_for(0, static_cast<int64_t>(indices.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        volumes[i] = std::make_shared<data::Volume>(data::load_volume(
            cases[indices[i]], config_.model.num_classes, config_.model.dimensions));
      }
    });
    // The reference deforms the whole case when it loads it for training, before the patches.
    if (deform && noise_) {
      for (auto& volume : volumes) data::elastic_deform(*volume, *noise_, generator);
    }
    std::vector<PendingPatch> patches;
    for (const auto& volume : volumes) {
      for (int64_t p = 0; p < per_case; ++p) {
        patches.push_back({volume, data::draw_patch(*volume, options, generator)});
      }
    }
    return patches;
  }

  const config::Config& config_;
  std::vector<data::VolumeCase> train_, valid_;
  data::PatchOptions train_patch_, valid_patch_;
  std::vector<int64_t> epoch_cases_;
  int64_t next_case_ = 0;
  std::vector<PendingPatch> pending_;
  at::Generator* generator_ = nullptr;         // the epoch's data generator (begin_epoch)
  std::unique_ptr<data::ElasticField> noise_;  // null without elastic deformation
};

}  // namespace

std::unique_ptr<TrainingData> make_volume_training_data(const config::Config& config,
                                                        const std::filesystem::path& train_csv,
                                                        const std::filesystem::path& valid_csv,
                                                        const nn::BackboneImpl& backbone) {
  return std::make_unique<VolumeData>(config, train_csv, valid_csv, backbone);
}

}  // namespace ssn::train
