#include "ssn/nn/segmentation_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "golden.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/nn/unet.h"

namespace ssn::nn {
namespace {

using ssn::testing::error_of;

using ::testing::HasSubstr;

TEST(UNet, KeepsTheResolutionIn2dAnd3d) {
  UNet2d unet2(UNetOptions(3, {4, 8, 16}).convs_per_level(1));
  EXPECT_EQ(unet2->forward(torch::randn({2, 3, 16, 12})).sizes(), at::IntArrayRef({2, 4, 16, 12}));
  UNet3d unet3(UNetOptions(2, {3, 5}).normalisation(Normalisation::kInstance));
  EXPECT_EQ(unet3->forward(torch::randn({1, 2, 4, 6, 8})).sizes(),
            at::IntArrayRef({1, 3, 4, 6, 8}));
  EXPECT_EQ(unet3->out_channels(), 3);
  EXPECT_EQ(unet3->dimension(), 3);
}

// The preset is PHiSeg's `proposed` U-Net: seven levels of three 3x3 convolutions (no bias,
// batch norm), decoder levels as wide as the level below, three 1x1 recombination layers of 32,
// counted parameter by parameter; it halves the resolution six times by average pooling.
TEST(UNet, PhisegPresetIsPhisegsNetwork) {
  UNet2d unet(UNetOptions::phiseg(1));
  const std::vector<int64_t> widths = {32, 64, 128, 192, 192, 192, 192};
  int64_t expected = 0;
  const auto block = [&](int64_t in, int64_t out, int64_t kernel_area) {
    for (int c = 0; c < 3; ++c) expected += kernel_area * (c == 0 ? in : out) * out + 2 * out;
  };
  for (size_t level = 0; level < widths.size(); ++level) {
    block(level == 0 ? 1 : widths[level - 1], widths[level], 9);
  }
  int64_t below = widths.back();
  for (size_t level = widths.size() - 1; level-- > 0;) {
    block(below + widths[level], widths[level + 1], 9);
    below = widths[level + 1];
  }
  block(below, 32, 1);
  int64_t parameters = 0;
  for (const auto& p : unet->parameters()) parameters += p.numel();
  EXPECT_EQ(parameters, expected);
  EXPECT_EQ(unet->input_size_for(1), 64);  // 2^6: six poolings
  EXPECT_EQ(unet->out_channels(), 32);
  EXPECT_EQ(unet->forward(torch::randn({2, 1, 64, 64})).sizes(), at::IntArrayRef({2, 32, 64, 64}));
  const auto bn = unet->named_modules()["encoder.0.1"]->as<torch::nn::BatchNorm2d>();
  ASSERT_NE(bn, nullptr);
  EXPECT_EQ(bn->options.eps(), 1e-3);
  EXPECT_EQ(bn->options.momentum().value(), 0.01);
}

// TensorFlow 1's resize_images: output i reads input i / 2, the last output repeats the edge.
TEST(UNet, Tf1UpsamplingCopiesEvenOutputsAndAveragesOddOnes) {
  const at::Tensor row = at::arange(3, at::kFloat).view({1, 1, 1, 3});
  const at::Tensor up = upsample2_tf1(row.expand({1, 1, 2, 3}));
  EXPECT_EQ(up.sizes(), at::IntArrayRef({1, 1, 4, 6}));
  EXPECT_TRUE(up[0][0][3].equal(at::tensor({0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.0f})));
  const at::Tensor cube = at::arange(8, at::kFloat).view({1, 1, 2, 2, 2});
  const at::Tensor up3 = upsample2_tf1(cube);
  EXPECT_EQ(up3.sizes(), at::IntArrayRef({1, 1, 4, 4, 4}));
  EXPECT_FLOAT_EQ(up3[0][0][1][1][1].item<float>(), cube.mean().item<float>());
}

TEST(UNet, RejectsBadOptionsAndSizes) {
  UNet2d unet(UNetOptions(1, {4, 8, 8}));
  EXPECT_THAT(
      error_of([&] {
        unet->forward(torch::randn({1, 1, 10, 8}));
      }),
      HasSubstr("with 3 levels every spatial size must be divisible by 4, got [1, 1, 10, 8]"));
  EXPECT_THAT(error_of([&] {
                unet->forward(torch::randn({1, 2, 8, 8}));
              }),
              HasSubstr("image must have shape [B, I = 1, *spatial] with 2 spatial dimensions"));
  EXPECT_THAT(error_of([] {
                UNet2d(UNetOptions(1, {4, 0}));
              }),
              HasSubstr("every entry of filters must be >= 1, got 0"));
  EXPECT_THAT(
      error_of([] { parse_normalisation("group"); }),
      HasSubstr("normalisation must be \"batch\", \"instance\" or \"none\", got \"group\""));
}

SegmentationModel make_model(ModelKind kind) {
  auto backbone = std::make_shared<UNet2dImpl>(UNetOptions(1, {8, 16}).convs_per_level(1));
  return SegmentationModel(backbone, SegmentationModelOptions(kind, /*num_classes=*/2).rank(3));
}

TEST(SegmentationModel, ThreeKindsShareOneInterface) {
  const auto image = torch::randn({2, 1, 8, 8});
  const ModelOutput deterministic = make_model(ModelKind::kDeterministic)->forward(image);
  EXPECT_EQ(deterministic.mean_logits.sizes(), at::IntArrayRef({2, 2, 8, 8}));
  EXPECT_FALSE(deterministic.stochastic.has_value());
  const ModelOutput diagonal = make_model(ModelKind::kDiagonal)->forward(image);
  ASSERT_TRUE(diagonal.stochastic.has_value());
  EXPECT_EQ(diagonal.stochastic->distribution.rank(), 0);
  const ModelOutput low_rank = make_model(ModelKind::kLowRank)->forward(image);
  EXPECT_EQ(low_rank.stochastic->distribution.rank(), 3);
  EXPECT_EQ(low_rank.stochastic->distribution.event_shape(), std::vector<int64_t>({2, 8, 8}));
  EXPECT_THAT(error_of([] {
                SegmentationModel(std::make_shared<UNet2dImpl>(UNetOptions(1, {4})),
                                  SegmentationModelOptions(ModelKind::kLowRank, 2).rank(0));
              }),
              HasSubstr("a low-rank model needs rank >= 1, got 0"));
}

TEST(SegmentationModel, LowRankSsnFitsATinyProblem) {
  torch::manual_seed(0);
  SegmentationModel model = make_model(ModelKind::kLowRank);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  const auto image = torch::randn({2, 1, 8, 8});
  const auto target = (image.squeeze(1) > 0).to(torch::kLong);
  const loss::SegmentationLoss loss_fn({loss::LossKind::kStochasticMcIntegral, 4});
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    optimizer.zero_grad();
    const ModelOutput out = model->forward(image);
    const auto loss = loss_fn(out.mean_logits, &out.stochastic->distribution, target);
    loss.backward();
    optimizer.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
}

}  // namespace
}  // namespace ssn::nn
