#pragma once

// The fast core of the evaluation: label maps packed into per-channel bit masks, and every
// pairwise intersection between two sets of maps computed with AND + popcount in one pass.
// A "channel" is a set of classes: a single foreground class for IoU, or a merged region for Dice
// (BraTS: whole tumour {1, 2, 3}, tumour core {1, 3}, enhancing {3}).
//
// Shapes: L maps, S pixels/voxels, K classes, H channels.

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace ssn::metrics {

/// A channel: the classes whose pixels it contains.
using ClassSet = std::vector<int64_t>;

/// The foreground classes 1..K-1, one channel each.
std::vector<ClassSet> foreground_classes(int64_t num_classes);

class PackedLabels {
 public:
  /// labels [L, *spatial], integer values in [0, K) (checked: a value >= K or < 0 is an error that
  /// names it); channels: at most 64 class sets, each class in [0, K).
  PackedLabels(const at::Tensor& labels, int64_t num_classes, std::vector<ClassSet> channels);

  int64_t num_maps() const { return num_maps_; }
  int64_t num_pixels() const { return num_pixels_; }
  int64_t num_channels() const { return static_cast<int64_t>(channels_.size()); }
  const std::vector<ClassSet>& channels() const { return channels_; }
  /// Pixels of map `map` in channel `channel`.
  int64_t channel_size(int64_t map, int64_t channel) const {
    return sizes_[map * num_channels() + channel];
  }
  /// The bit mask of one map and channel: words_per_mask() words, bit p of word w = pixel 64w + p.
  const uint64_t* mask(int64_t map, int64_t channel) const {
    return bits_.data() + (map * num_channels() + channel) * words_;
  }
  int64_t words_per_mask() const { return words_; }

 private:
  int64_t num_maps_ = 0;
  int64_t num_pixels_ = 0;
  int64_t words_ = 0;
  std::vector<ClassSet> channels_;
  std::vector<uint64_t> bits_;  // [L, H, words]
  std::vector<int64_t> sizes_;  // [L, H]
};

/// Pairwise overlaps between the maps of two packed sets with the same channels and pixels.
struct Overlap {
  at::Tensor intersection;  ///< [La, Lb, H] int64
  at::Tensor size_a;        ///< [La, H] int64
  at::Tensor size_b;        ///< [Lb, H] int64
};

/// All La x Lb x H intersections, multi-threaded over the maps of `a`. With `symmetric` (a and b
/// the same set) only i <= j is counted and mirrored.
Overlap pairwise_overlap(const PackedLabels& a, const PackedLabels& b, bool symmetric = false);

/// [La, Lb]: d = 1 - mean over channels of IoU, with IoU = 1 where a channel is empty in both.
at::Tensor iou_distance(const Overlap& overlap);

/// [La, Lb, H]: Dice 2|A n B| / (|A| + |B|), NaN where a channel is empty in both.
at::Tensor dice(const Overlap& overlap);

}  // namespace ssn::metrics
