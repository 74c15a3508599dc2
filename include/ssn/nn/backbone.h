#pragma once

// Any network that turns an image into a feature map can feed an SSN head.
// Shapes: B batch, I input channels, F feature channels, *spatial = H, W or D, H, W.

#include <torch/nn/module.h>

namespace ssn::nn {

class BackboneImpl : public torch::nn::Module {
 public:
  /// image [B, I, *spatial] -> features [B, F, *spatial'] (pre-activation: heads apply relu).
  virtual torch::Tensor forward(const torch::Tensor& image) = 0;
  /// F.
  virtual int64_t out_channels() const = 0;
  /// 2 or 3.
  virtual int64_t dimension() const = 0;
  /// Output length along one spatial axis for an input of `input` voxels (valid convolutions
  /// shrink it); the output sits centred in the input, starting at input / 2 - output / 2.
  virtual int64_t output_size(int64_t input) const { return input; }
  /// The smallest input length that gives at least `output` voxels and that the network accepts.
  virtual int64_t input_size_for(int64_t output) const { return output; }
  /// Channels of the widest layer that works at (about) the input size, to size inference
  /// batches.
  virtual int64_t widest_layer() const { return out_channels(); }
};

}  // namespace ssn::nn
