#pragma once

// DeepMedic backbone for 2-D and 3-D from one template (Kamnitsas et al., 2017, as in the SSN
// reference): parallel pathways that see the input at scale factors 5, 3 and 1 (downsampling by
// strided slicing, 8 pre-activation blocks of valid 3^D convolutions, nearest upsampling, centre
// crops), concatenated and followed by 1x1 pre-activation blocks. Valid convolutions make the
// output smaller than the input: see output_size / input_size_for. Submodule names follow the
// reference's state_dict ("path(5, 5, 5)0.path.1.conv.weight", "fully_connected.0.norm.weight"),
// so its checkpoints map one to one.

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "ssn/nn/backbone.h"
#include "ssn/nn/nd_layers.h"

namespace ssn::nn {

struct DeepMedicOptions {
  explicit DeepMedicOptions(int64_t in_channels) : in_channels_(in_channels) {}
  /// I: input channels (4 for BraTS: FLAIR, T1, T1ce, T2).
  TORCH_ARG(int64_t, in_channels);
  /// Channels of the convolutional blocks of every pathway (each block shrinks the map by 2).
  TORCH_ARG(std::vector<int64_t>, feature_maps) = std::vector<int64_t>{30, 30, 40, 40,
                                                                       40, 40, 50, 50};
  /// Channels of the hidden 1x1 blocks; a last 1x1 block returns to feature_maps.back().
  TORCH_ARG(std::vector<int64_t>, fully_connected) = std::vector<int64_t>{250, 250};
  /// One pathway per factor, isotropic, largest first; the output size is a multiple of the first.
  TORCH_ARG(std::vector<int64_t>, scale_factors) = std::vector<int64_t>{5, 3, 1};
  /// Dropout of each 1x1 block (fully_connected.size() + 1 values).
  TORCH_ARG(std::vector<double>, dropout) = std::vector<double>{0.0, 0.5, 0.5};
};

/// One pre-activation block: BatchNorm -> PReLU -> dropout -> convolution without bias, plus the
/// input (centre-trimmed to the output size) when the channel counts match. A pathway's first block
/// convolves the raw input (its norm and prelu exist, as in the reference, but are not applied).
template <size_t D>
class PreActBlockImpl : public torch::nn::Module {
 public:
  PreActBlockImpl(int64_t in, int64_t out, int64_t kernel, double dropout, bool first);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  using BatchNorm = typename NdLayers<D>::BatchNorm;
  using Conv = typename NdLayers<D>::Conv;
  BatchNorm norm_{nullptr};
  Conv conv_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  int64_t kernel_;
  bool first_;
  bool residual_;
};

template <size_t D>
class DeepMedicImpl : public BackboneImpl {
 public:
  explicit DeepMedicImpl(DeepMedicOptions options);

  /// image [B, I, *in] -> features [B, feature_maps.back(), *output_size(in)].
  torch::Tensor forward(const torch::Tensor& image) override;
  int64_t out_channels() const override { return options_.feature_maps().back(); }
  int64_t dimension() const override { return static_cast<int64_t>(D); }
  const DeepMedicOptions& options() const { return options_; }

  /// Output length along one axis for an input of `input` voxels: (input / s0 - L) * s0 with s0
  /// the first scale factor and L = 2 * blocks; throws when that is not positive.
  int64_t output_size(int64_t input) const override;
  /// The smallest input that gives at least `output` voxels: (ceil(output / s0) + L) * s0.
  int64_t input_size_for(int64_t output) const override;
  int64_t widest_layer() const override;

 private:
  DeepMedicOptions options_;
  std::vector<std::vector<std::shared_ptr<PreActBlockImpl<D>>>> pathways_;
  std::vector<std::shared_ptr<PreActBlockImpl<D>>> fully_connected_;
};

using DeepMedic2dImpl = DeepMedicImpl<2>;
using DeepMedic3dImpl = DeepMedicImpl<3>;
TORCH_MODULE(DeepMedic2d);
TORCH_MODULE(DeepMedic3d);

}  // namespace ssn::nn
