#pragma once

// Whole-image inference by tiling: the model sees tiles of a fixed input size and its outputs are
// assembled into maps of the whole image, never holding more than one batch of tiles' logits.
// Shapes: I input channels, C classes, R rank, *spatial = D, H, W (or H, W).

#include <ATen/ATen.h>

#include <vector>

#include "ssn/nn/segmentation_model.h"

namespace ssn::train {

struct TilingOptions {
  /// Input size of a tile per spatial axis (the model's output for it is its output size).
  std::vector<int64_t> tile_input;
  /// Tiles per forward pass, at most.
  int64_t batch_size = 1;
  /// Fewer tiles go through at once when the widest layer's activations of batch_size tiles
  /// (input and output of a layer, float32) would exceed this (2 GiB): a BraTS case at the
  /// reference's tile size goes 4 tiles at a time instead of 10.
  int64_t memory_budget_bytes = int64_t{2} << 30;
  torch::Device device = torch::kCPU;
};

/// The predicted distribution of a whole image, in the predictions folder's map layout.
struct ImagePrediction {
  at::Tensor mean;        ///< [C, *spatial]
  at::Tensor cov_diag;    ///< [C, *spatial] (1e-12 for a deterministic model)
  at::Tensor cov_factor;  ///< [C*R, *spatial] (zeros [C, *spatial] for deterministic / diagonal)
};

/// Runs `model` (in eval mode) over image [I, *spatial] with the sampling mask [*spatial] (bool).
/// Models whose output is smaller than their input (DeepMedic) tile the output exactly, as the
/// reference: consecutive output tiles (the last one may stick out and is cut), each with its
/// input context cut from the image padded with zeros (the reference pads with edge values). When
/// the tile output is a multiple of every DeepMedic scale factor (30 for the reference: 5 and 3),
/// this equals one pass over the whole zero-padded image. Models whose output equals their input
/// (U-Net) use tiles overlapping by a quarter and average the overlaps.
ImagePrediction predict_image(nn::SegmentationModel& model, const at::Tensor& image,
                              const at::Tensor& mask, const TilingOptions& options);

}  // namespace ssn::train

#include <nlohmann/json.hpp>

#include "ssn/config/config.h"

namespace ssn::train {

/// Times predict_image for the model of `config` (random weights) on a random image
/// [input_channels, *shape] with an ellipsoid sampling mask, tiles of test.input_patch_size (else
/// training.input_patch_size): {"seconds", "tiles", "tile_input", "tile_output", "shape",
/// "peak_rss_bytes" (the process' high-water mark, getrusage), "peak_tensor_bytes" (CPU tensors
/// allocated at once during inference), "threads"}.
nlohmann::json benchmark_predict(const config::Config& config, const std::vector<int64_t>& shape,
                                 uint64_t seed);

}  // namespace ssn::train
