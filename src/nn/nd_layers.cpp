#include "ssn/nn/nd_layers.h"

#include <c10/util/Exception.h>

namespace ssn::nn {
namespace {

template <size_t D>
torch::nn::AnyModule pointwise_conv_nd(int64_t in_channels, int64_t out_channels, bool bias) {
  using L = NdLayers<D>;
  return torch::nn::AnyModule(typename L::Conv(
      typename L::ConvOptions(in_channels, out_channels, /*kernel_size=*/1).bias(bias)));
}

}  // namespace

torch::nn::AnyModule pointwise_conv(int64_t dimension, int64_t in_channels, int64_t out_channels,
                                    bool bias) {
  TORCH_CHECK(dimension == 2 || dimension == 3, "pointwise_conv: dimension must be 2 or 3, got ",
              dimension);
  return dimension == 2 ? pointwise_conv_nd<2>(in_channels, out_channels, bias)
                        : pointwise_conv_nd<3>(in_channels, out_channels, bias);
}

}  // namespace ssn::nn
