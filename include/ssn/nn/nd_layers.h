#pragma once

// The one way ssn chooses between 2-D and 3-D layers: NdLayers<D> names LibTorch's layer types
// for D spatial axes (as LibTorch's own ConvNdImpl<D>), and code whose dimension is known only at
// run time (the head, SegmentationModel) builds its layers through pointwise_conv, which picks
// NdLayers<2> or NdLayers<3> once.

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/instancenorm.h>

#include <cstddef>
#include <cstdint>

namespace ssn::nn {

template <size_t D>
struct NdLayers;

template <>
struct NdLayers<2> {
  using Conv = torch::nn::Conv2d;
  using ConvOptions = torch::nn::Conv2dOptions;
  using BatchNorm = torch::nn::BatchNorm2d;
  using BatchNormOptions = torch::nn::BatchNormOptions;
  using InstanceNorm = torch::nn::InstanceNorm2d;
  using InstanceNormOptions = torch::nn::InstanceNorm2dOptions;
};

template <>
struct NdLayers<3> {
  using Conv = torch::nn::Conv3d;
  using ConvOptions = torch::nn::Conv3dOptions;
  using BatchNorm = torch::nn::BatchNorm3d;
  using BatchNormOptions = torch::nn::BatchNormOptions;
  using InstanceNorm = torch::nn::InstanceNorm3d;
  using InstanceNormOptions = torch::nn::InstanceNorm3dOptions;
};

/// A 1x1 convolution with bias over `dimension` (2 or 3) spatial axes: NdLayers<dimension>::Conv,
/// held as an AnyModule so that its owner's forward needs no cast. Register `.ptr()` under the
/// name the parameters should carry.
torch::nn::AnyModule pointwise_conv(int64_t dimension, int64_t in_channels, int64_t out_channels,
                                    bool bias = true);

}  // namespace ssn::nn
