#pragma once

// Volumes in the reference's CSV index (BraTS): one row per case, one column per input channel,
// the target and an optional sampling mask, paths relative to the CSV's folder; and the patches
// that DeepMedic-style training draws from them.
// Shapes: I input channels, *spatial = D, H, W (or H, W).

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <filesystem>
#include <string>
#include <vector>

#include "ssn/io/image.h"

namespace ssn::data {

/// Which CSV columns hold what (the config's data section).
struct CsvColumns {
  std::vector<std::string> channels;  ///< e.g. flair, t1, t1ce, t2
  std::string target = "seg";         ///< empty: no target (inference only)
  std::string sampling_mask;          ///< empty or a column name; a missing column means all ones
};

/// Intensity normalisation of one input channel, as nnU-Net's (written by index_nnunet_raw into
/// normalisation.json next to its CSVs), applied by load_volume.
struct ChannelNormalisation {
  enum class Kind {
    kNone,
    /// Clip to [lower, upper] (the training foreground's 0.5 and 99.5 percentiles), then
    /// (x - mean) / std with the training foreground's statistics.
    kCt,
    /// Per image: (x - mean) / std over the non-zero voxels, which alone change; zeros stay 0.
    kNonzeroZscore
  };
  Kind kind = Kind::kNone;
  double lower = 0, upper = 0, mean = 0, std = 1;
};

/// The file of a CSV index's folder that holds its channels' normalisation.
inline constexpr const char* kNormalisationFile = "normalisation.json";

struct VolumeCase {
  std::string id;
  std::vector<std::filesystem::path> channels;
  std::filesystem::path target;  ///< empty when there is none
  std::filesystem::path mask;    ///< empty: all ones
  /// One per channel, or empty: the intensities as stored.
  std::vector<ChannelNormalisation> normalisation;
};

/// Applies a channel's normalisation to its values (float32).
at::Tensor normalise_channel(const at::Tensor& values, const ChannelNormalisation& n);

/// Reads a case index CSV (header with `id` and the named columns). Errors name the file, line and
/// column: missing columns, empty fields, duplicate ids, files that do not exist. With a
/// normalisation.json in the CSV's folder, its entries for the channel columns are attached to
/// every case (a malformed file is an error naming it and the field).
std::vector<VolumeCase> read_case_csv(const std::filesystem::path& csv, const CsvColumns& columns);

struct Volume {
  std::string id;
  at::Tensor image;       ///< [I, *spatial] float32
  at::Tensor target;      ///< [*spatial] int64 class indices, or undefined
  at::Tensor mask;        ///< [*spatial] bool
  io::Geometry geometry;  ///< of the first channel
};

/// Loads a case and checks it: every channel of `dimensions` spatial axes (2 or 3; 0 = any), the
/// target and the mask of the same shape and geometry, no NaN or infinite voxel, target labels in
/// [0, num_classes). Errors name the file.
Volume load_volume(const VolumeCase& c, int64_t num_classes, int64_t dimensions = 0);

struct PatchOptions {
  /// Input patch size per spatial axis and the model's output size for it.
  std::vector<int64_t> input_size;
  std::vector<int64_t> output_size;
  /// A patch is centred on a foreground voxel (target > 0 inside the mask) with this
  /// probability, else on a background voxel (target == 0 inside the mask), as the reference's
  /// ForegroundBackgroundPatchSampler; any mask voxel when the wanted kind is absent.
  double foreground_probability = 0.5;
  /// The reference's retry count (accepted; a centre is drawn from the wanted voxels directly).
  int64_t n_tries = 5;
  /// Augmentation as the reference's: with flip_probability, flips along every axis of flip_axes
  /// (spatial, from 0 in tensor order); with rotation_probability, per plane 1-3 quarter turns in
  /// a random direction (planes of unequal patch size are skipped); with histogram_probability,
  /// per channel x * N(1, 0.01) + U(0, 0.05).
  double flip_probability = 0.0;
  std::vector<int64_t> flip_axes;
  double rotation_probability = 0.0;
  std::vector<std::pair<int64_t, int64_t>> rotation_planes;
  double histogram_probability = 0.0;
};

struct Patch {
  at::Tensor image;   ///< [I, *input_size], zero outside the volume
  at::Tensor target;  ///< [*output_size], 0 outside the volume
  at::Tensor mask;    ///< [*output_size], false outside the volume
};

/// The region of a patch: input [centre - input / 2, ...) and output [centre - output / 2, ...),
/// which is where a valid-convolution network (DeepMedic) puts its output inside its input.
Patch extract_patch(const Volume& volume, const std::vector<int64_t>& centre,
                    const std::vector<int64_t>& input_size,
                    const std::vector<int64_t>& output_size);

/// Where a patch is and how it is augmented: everything random about it, drawn up front so that
/// patches can be cut from their volume only when a batch needs them.
struct PatchSpec {
  std::vector<int64_t> centre;
  bool flip = false;
  struct Rotation {
    int64_t a, b, turns;  ///< rot90 by `turns` from spatial axis a towards b
  };
  std::vector<Rotation> rotations;
  at::Tensor scale, shift;  ///< [I] intensity change, or undefined
};

/// Draws a patch's centre and augmentation as the options say.
PatchSpec draw_patch(const Volume& volume, const PatchOptions& options, at::Generator& generator);

/// Cuts and augments the patch a spec describes.
Patch make_patch(const Volume& volume, const PatchSpec& spec, const PatchOptions& options);

/// draw_patch then make_patch.
Patch sample_patch(const Volume& volume, const PatchOptions& options, at::Generator& generator);

/// Cuts region [start, start + size) out of x's trailing axes (spatial), zero outside x.
at::Tensor crop_padded(const at::Tensor& x, const std::vector<int64_t>& start,
                       const std::vector<int64_t>& size);

}  // namespace ssn::data
