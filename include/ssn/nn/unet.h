#pragma once

// U-Net backbone for 2-D and 3-D from one template, as LibTorch's ConvNdImpl<D>: an encoder of
// `levels` stages (convs_per_level 3x3 convolutions + normalisation + relu, 2x max- or average
// pooling between stages) and a decoder that upsamples (bilinear / trilinear), concatenates the
// skip connection and convolves again, then optional 1x1 recombination layers. The output is at
// the input resolution, with UNetOptions::out_channels() channels.

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ssn/nn/backbone.h"

namespace ssn::nn {

enum class Normalisation { kBatch, kInstance, kNone };

/// "batch" | "instance" | "none" -> Normalisation; anything else is an error naming the value.
Normalisation parse_normalisation(const std::string& name);

/// Downsampling between encoder levels: 2x max pooling (ssn's default) or 2x average pooling
/// (PHiSeg's, the paper's LIDC network).
enum class Pooling { kMax, kAverage };
/// Upsampling in the decoder: PyTorch's bilinear / trilinear interpolation (half-pixel centres,
/// align_corners false), or TensorFlow 1's resize_images, which PHiSeg's runs used: output i
/// reads input i / 2, so even outputs copy the input, odd ones average two neighbours and the
/// last one repeats the edge.
enum class Upsampling { kLinear, kLinearTf1 };
/// Width of a decoder level's convolutions: its own level's filters (ssn's default), or the
/// filters of the level below it (PHiSeg's).
enum class DecoderWidths { kLevel, kLevelBelow };

/// "max" | "average"; "linear" | "linear_tf1"; "level" | "level_below". Errors name the value.
Pooling parse_pooling(const std::string& name);
Upsampling parse_upsampling(const std::string& name);
DecoderWidths parse_decoder_widths(const std::string& name);

struct UNetOptions {
  UNetOptions(int64_t in_channels, std::vector<int64_t> filters)
      : in_channels_(in_channels), filters_(std::move(filters)) {}

  /// The U-Net of PHiSeg's `proposed` likelihood, the paper's LIDC network: 7 levels of
  /// [32, 64, 128, 192, 192, 192, 192], three 3x3 convolutions per level with batch norm (epsilon
  /// 1e-3, TensorFlow's decay 0.99 = momentum 0.01) and no bias, average pooling, TensorFlow 1's
  /// bilinear upsampling, decoder levels as wide as the level below, then three 1x1
  /// recombination layers of 32.
  static UNetOptions phiseg(int64_t in_channels) {
    return UNetOptions(in_channels, {32, 64, 128, 192, 192, 192, 192})
        .convs_per_level(3)
        .pooling(Pooling::kAverage)
        .upsampling(Upsampling::kLinearTf1)
        .decoder_widths(DecoderWidths::kLevelBelow)
        .recombination({32, 32, 32})
        .batch_norm_epsilon(1e-3)
        .batch_norm_momentum(0.01);
  }

  /// Width of decoder level `level` (0 = full resolution; levels - 1 has no decoder).
  int64_t decoder_width(size_t level) const {
    return decoder_widths_ == DecoderWidths::kLevel ? filters_[level] : filters_[level + 1];
  }
  /// Channels of the top decoder level's output (the only level's for a one-level U-Net).
  int64_t decoder_out_channels() const {
    return filters_.size() > 1 ? decoder_width(0) : filters_.front();
  }
  /// Channels of the network's output: the last recombination layer, or the top decoder level.
  int64_t out_channels() const {
    return recombination_.empty() ? decoder_out_channels() : recombination_.back();
  }

  /// I: channels of the input image.
  TORCH_ARG(int64_t, in_channels);
  /// Filters per level, from the full-resolution level down; its length is the number of levels.
  TORCH_ARG(std::vector<int64_t>, filters);
  /// 3x3 convolutions per level, in the encoder and again in the decoder.
  TORCH_ARG(int64_t, convs_per_level) = 2;
  TORCH_ARG(Normalisation, normalisation) = Normalisation::kBatch;
  TORCH_ARG(Pooling, pooling) = Pooling::kMax;
  TORCH_ARG(Upsampling, upsampling) = Upsampling::kLinear;
  TORCH_ARG(DecoderWidths, decoder_widths) = DecoderWidths::kLevel;
  /// Widths of the 1x1 convolution + normalisation + relu layers after the decoder (none by
  /// default).
  TORCH_ARG(std::vector<int64_t>, recombination) = std::vector<int64_t>{};
  /// Batch norm's epsilon and momentum (PyTorch's convention: the weight of the new statistics).
  TORCH_ARG(double, batch_norm_epsilon) = 1e-5;
  TORCH_ARG(double, batch_norm_momentum) = 0.1;
};

template <size_t D>
class UNetImpl : public BackboneImpl {
 public:
  explicit UNetImpl(UNetOptions options);

  /// image [B, I, *spatial], each spatial size divisible by 2^(levels - 1) -> [B,
  /// out_channels(), *spatial].
  torch::Tensor forward(const torch::Tensor& image) override;
  int64_t out_channels() const override { return options_.out_channels(); }
  int64_t dimension() const override { return static_cast<int64_t>(D); }
  /// Rounded up to a multiple of 2^(levels - 1), the sizes the pooling accepts.
  int64_t input_size_for(int64_t output) const override {
    const int64_t multiple = int64_t{1} << (options_.filters().size() - 1);
    return (output + multiple - 1) / multiple * multiple;
  }
  int64_t widest_layer() const override {
    return 2 * *std::max_element(options_.filters().begin(), options_.filters().end());
  }
  const UNetOptions& options() const { return options_; }

 private:
  UNetOptions options_;
  torch::nn::ModuleList encoder_;                 // one Sequential per level
  torch::nn::ModuleList decoder_;                 // one Sequential per level above the bottom
  torch::nn::Sequential recombination_{nullptr};  // none without options_.recombination()
};

using UNet2dImpl = UNetImpl<2>;
using UNet3dImpl = UNetImpl<3>;
TORCH_MODULE(UNet2d);
TORCH_MODULE(UNet3d);

/// x [B, C, *spatial] -> [B, C, 2 * each spatial size], TensorFlow 1's bilinear resize_images
/// (align_corners false, no half-pixel centres), separably along every spatial axis.
torch::Tensor upsample2_tf1(const torch::Tensor& x);

}  // namespace ssn::nn
