#pragma once

// The LIDC-IDRI crops in DeepMind's layout (also what `ssn synth --kind lidc-like` writes):
//   <data_dir>/<split>/images/<patient>/<slice>.png          180 x 180 grey image
//   <data_dir>/<split>/gt/<patient>/<slice>_l<1..4>.png      one binary mask per annotator
// Examples are centre-cropped (128 x 128), optionally downscaled, intensity-normalised.
// Shapes: A annotators, H x W pixels.

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace ssn::data {

struct LidcOptions {
  /// Side of the centre crop taken from each image and mask.
  int64_t crop = 128;
  /// Side after downscaling the crop (area average for images, majority for masks); = crop keeps
  /// it.
  int64_t size = 128;
  /// Annotators per image (the dataset has 4).
  int64_t annotators = 4;
  /// Intensities: standardised per image (ssn's default), or PHiSeg's: the image in [0, 1] (its
  /// integer codes divided by the format's largest code) minus 0.5.
  enum class Intensity { kStandardise, kMinusHalf } intensity = Intensity::kStandardise;
};

/// Training augmentation of LIDC crops.
enum class LidcAugmentation {
  kNone,
  /// A random flip and a random multiple of 90 degrees (ssn's default).
  kFlipsAndTurns,
  /// PHiSeg's batch provider (the paper's LIDC runs): with probability 1/2, a rotation by an
  /// angle uniform in [-10, 10] degrees about (W/2, H/2) with zeros outside, then a random square
  /// crop of side uniform in [S - 30 S / 128, S] resized back to S x S, both bilinear (labels as
  /// one-hot maps, then argmax); otherwise nothing. No flips: its config asks for them under
  /// names its code does not read.
  kPhiseg
};

struct LidcCase {
  std::string id;  ///< <patient>/<slice>
  std::filesystem::path image;
  std::vector<std::filesystem::path> annotations;  ///< l1 .. lA
};

/// Lists <data_dir>/<split>. Errors name the folder or file: a missing split or images folder, an
/// image without all A annotator masks, no images at all.
std::vector<LidcCase> scan_lidc_split(const std::filesystem::path& data_dir,
                                      const std::string& split, const LidcOptions& options);

struct LidcExample {
  std::string id;
  at::Tensor image;        ///< [1, H, W] float32, zero mean and unit variance
  at::Tensor annotations;  ///< [A, H, W] int64 in {0, 1}
};

/// Reads one case. Errors name the file: unreadable, image and mask sizes differ, a mask with
/// values other than 0 and one foreground value, an image smaller than the crop.
LidcExample load_lidc_example(const LidcCase& c, const LidcOptions& options);

/// A whole split in memory (128 x 128 crops: ~70 kB per example).
class LidcDataset {
 public:
  LidcDataset(const std::filesystem::path& data_dir, const std::string& split, LidcOptions options);
  int64_t size() const { return static_cast<int64_t>(examples_.size()); }
  const LidcExample& operator[](int64_t i) const { return examples_[i]; }
  const LidcOptions& options() const { return options_; }

 private:
  LidcOptions options_;
  std::vector<LidcExample> examples_;
};

struct TrainingBatch {
  at::Tensor images;   ///< [B, 1, H, W]
  at::Tensor targets;  ///< [B, H, W] int64: one annotator's mask per example ([B, A, *spatial]:
                       ///< all A annotators' masks, LIDC with data.train_targets "all_annotators")
  at::Tensor masks;    ///< [B, *spatial] bool: the sampling mask (undefined: everywhere)
};

/// One training batch: for each index, one annotator drawn at random (as the paper trains) or,
/// with all_annotations, every annotator's mask (targets [B, A, H, W]); then the augmentation
/// applied to image and masks alike.
TrainingBatch make_training_batch(const LidcDataset& dataset, const std::vector<int64_t>& indices,
                                  at::Generator generator,
                                  LidcAugmentation augmentation = LidcAugmentation::kFlipsAndTurns,
                                  bool all_annotations = false);

/// PHiSeg's augmentation of one example (LidcAugmentation::kPhiseg): image [1, H, W] float,
/// target [H, W] (or [A, H, W]: several annotations, one transform) int64 with labels <
/// num_classes -> the same shapes.
std::pair<at::Tensor, at::Tensor> phiseg_augment(const at::Tensor& image, const at::Tensor& target,
                                                 int64_t num_classes, at::Generator& generator);

/// Assembles the batches of one epoch on a background thread, `depth` batches ahead of the
/// consumer. The generator is used by that thread alone, in batch order, so the batches (and the
/// generator's state once all are taken) are the same as when made one by one in the caller.
class BatchPrefetcher {
 public:
  BatchPrefetcher(const LidcDataset& dataset, std::vector<std::vector<int64_t>> batches,
                  at::Generator generator, LidcAugmentation augmentation,
                  bool all_annotations = false, size_t depth = 2);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  /// The next batch, in order; blocks until it is ready. Rethrows an error of the background
  /// thread. Must be called once per batch.
  TrainingBatch next();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ssn::data
