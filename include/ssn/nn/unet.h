#pragma once

// U-Net backbone for 2-D and 3-D from one template, as LibTorch's ConvNdImpl<D>: an encoder of
// `levels` stages (convs_per_level 3x3 convolutions + normalisation + relu, 2x max-pooling between
// stages) and a decoder that upsamples (bilinear / trilinear), concatenates the skip connection and
// convolves again. The output has filters[0] channels at the input resolution.

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ssn/nn/backbone.h"

namespace ssn::nn {

enum class Normalisation { kBatch, kInstance, kNone };

/// "batch" | "instance" | "none" -> Normalisation; anything else is an error naming the value.
Normalisation parse_normalisation(const std::string& name);

struct UNetOptions {
  UNetOptions(int64_t in_channels, std::vector<int64_t> filters)
      : in_channels_(in_channels), filters_(std::move(filters)) {}

  /// The U-Net of PHiSeg used by the paper on LIDC: 7 levels, [32, 64, 128, 192, 192, 192, 192].
  static UNetOptions phiseg(int64_t in_channels) {
    return UNetOptions(in_channels, {32, 64, 128, 192, 192, 192, 192}).convs_per_level(3);
  }

  /// I: channels of the input image.
  TORCH_ARG(int64_t, in_channels);
  /// Filters per level, from the full-resolution level down; its length is the number of levels.
  TORCH_ARG(std::vector<int64_t>, filters);
  /// 3x3 convolutions per level, in the encoder and again in the decoder.
  TORCH_ARG(int64_t, convs_per_level) = 2;
  TORCH_ARG(Normalisation, normalisation) = Normalisation::kBatch;
};

template <size_t D>
class UNetImpl : public BackboneImpl {
 public:
  explicit UNetImpl(UNetOptions options);

  /// image [B, I, *spatial], each spatial size divisible by 2^(levels - 1) -> [B, filters[0],
  /// *spatial].
  torch::Tensor forward(const torch::Tensor& image) override;
  int64_t out_channels() const override { return options_.filters().front(); }
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
  torch::nn::ModuleList encoder_;  // one Sequential per level
  torch::nn::ModuleList decoder_;  // one Sequential per level above the bottom
};

using UNet2dImpl = UNetImpl<2>;
using UNet3dImpl = UNetImpl<3>;
TORCH_MODULE(UNet2d);
TORCH_MODULE(UNet3d);

}  // namespace ssn::nn
