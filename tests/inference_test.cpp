#include "ssn/train/inference.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ssn/data/volumes.h"
#include "ssn/nn/deepmedic.h"
#include "ssn/nn/unet.h"

namespace ssn::train {
namespace {

nn::SegmentationModel tiny_deepmedic() {
  auto backbone = std::make_shared<nn::DeepMedic3dImpl>(nn::DeepMedicOptions(2)
                                                            .feature_maps({4, 4})
                                                            .fully_connected({8})
                                                            .scale_factors({3, 1})
                                                            .dropout({0.0, 0.0}));
  return nn::SegmentationModel(backbone,
                               nn::SegmentationModelOptions(nn::ModelKind::kLowRank, 3).rank(2));
}

// Exact tiling is the whole-volume forward pass cut into pieces: the tiles' strided downsampling
// grids line up with the big input's, so every output voxel is computed from the same inputs.
TEST(PredictImage, ExactTilesEqualOneForwardPassOverThePaddedVolume) {
  torch::manual_seed(0);
  nn::SegmentationModel model = tiny_deepmedic();
  model->eval();
  const at::Tensor image = at::randn({2, 18, 18, 18});
  at::Tensor mask = at::ones({18, 18, 18}, at::kBool);
  mask.slice(0, 0, 4).fill_(false);
  TilingOptions options;
  options.tile_input = {21, 21, 21};  // output 9: 2 x 2 x 2 tiles
  options.batch_size = 3;
  const ImagePrediction tiled = predict_image(model, image, mask, options);

  const int64_t input = model->backbone().input_size_for(18);  // 30
  const int64_t start = -(input / 2 - 18 / 2);
  torch::NoGradGuard no_grad;
  const at::Tensor padded = data::crop_padded(image, {start, start, start}, {input, input, input});
  const nn::ModelOutput whole = model->forward(padded.unsqueeze(0), mask.unsqueeze(0));
  EXPECT_LT((tiled.mean - whole.mean_logits[0]).abs().max().item<double>(), 1e-5);
  EXPECT_LT((tiled.cov_diag - whole.stochastic->cov_diag[0]).abs().max().item<double>(), 1e-5);
  EXPECT_LT((tiled.cov_factor - whole.stochastic->cov_factor[0]).abs().max().item<double>(), 1e-5);
  // Outside the sampling mask: P = 0, D = epsilon (the head's rule).
  EXPECT_EQ(tiled.cov_factor.slice(1, 0, 4).abs().max().item<double>(), 0.0);
}

TEST(PredictImage, SameSizeModelsAverageOverlappingTiles) {
  torch::manual_seed(1);
  auto backbone = std::make_shared<nn::UNet3dImpl>(
      nn::UNetOptions(1, {4, 8}).convs_per_level(1).normalisation(nn::Normalisation::kNone));
  nn::SegmentationModel model(backbone,
                              nn::SegmentationModelOptions(nn::ModelKind::kDeterministic, 2));
  const at::Tensor image = at::randn({1, 8, 20, 12});
  TilingOptions options;
  options.tile_input = {8, 8, 8};
  const ImagePrediction tiled =
      predict_image(model, image, at::ones({8, 20, 12}, at::kBool), options);
  EXPECT_EQ(tiled.mean.sizes(), (std::vector<int64_t>{2, 8, 20, 12}));
  EXPECT_TRUE(tiled.mean.isfinite().all().item<bool>());
  EXPECT_EQ(tiled.cov_diag.max().item<float>(), 1e-12f);  // deterministic
  // Voxels that only the first tile covers (H and W below 4; tiles start at 0, 6, 12 and 0, 4)
  // are that tile's output unchanged.
  torch::NoGradGuard no_grad;
  const at::Tensor corner =
      model->forward(image.slice(2, 0, 8).slice(3, 0, 8).unsqueeze(0)).mean_logits[0];
  EXPECT_LT((tiled.mean.slice(2, 0, 4).slice(3, 0, 4) - corner.slice(2, 0, 4).slice(3, 0, 4))
                .abs()
                .max()
                .item<double>(),
            1e-5);
}

// The tiles of a same-size model overlap by a quarter (H = 20: starts 0, 6, 12; W = 12: starts 0
// and 4); voxel (3, 7, 5) lies in four of them, and its value is their plain average.
TEST(PredictImage, AnOverlapVoxelIsTheAverageOfTheTilesCoveringIt) {
  torch::manual_seed(2);
  auto backbone = std::make_shared<nn::UNet3dImpl>(
      nn::UNetOptions(1, {4, 8}).convs_per_level(1).normalisation(nn::Normalisation::kNone));
  nn::SegmentationModel model(backbone,
                              nn::SegmentationModelOptions(nn::ModelKind::kDeterministic, 2));
  const at::Tensor image = at::randn({1, 8, 20, 12});
  TilingOptions options;
  options.tile_input = {8, 8, 8};
  const ImagePrediction tiled =
      predict_image(model, image, at::ones({8, 20, 12}, at::kBool), options);
  torch::NoGradGuard no_grad;
  at::Tensor sum = at::zeros({2}, at::kFloat);
  for (int64_t h0 : {0, 6}) {
    for (int64_t w0 : {0, 4}) {
      const at::Tensor tile =
          model->forward(image.slice(2, h0, h0 + 8).slice(3, w0, w0 + 8).unsqueeze(0))
              .mean_logits[0];
      sum += tile.select(1, 3).select(1, 7 - h0).select(1, 5 - w0);
    }
  }
  const at::Tensor expected = sum / 4;
  const at::Tensor actual = tiled.mean.select(1, 3).select(1, 7).select(1, 5);
  EXPECT_LT((actual - expected).abs().max().item<double>(), 1e-5);
  // The same voxel in one tile alone differs: the average is not a copy of one tile.
  const at::Tensor first =
      model->forward(image.slice(2, 0, 8).slice(3, 0, 8).unsqueeze(0)).mean_logits[0];
  EXPECT_GT((actual - first.select(1, 3).select(1, 7).select(1, 5)).abs().max().item<double>(),
            1e-4);
}

// A volume of 20 voxels per axis in tiles of output 9: tiles start at 0, 9 and 18, and the last
// one sticks out by 7 voxels and is cut; the maps still equal one pass over the padded volume.
TEST(PredictImage, RaggedLastTileIsCutAtTheVolumeEdge) {
  torch::manual_seed(3);
  nn::SegmentationModel model = tiny_deepmedic();
  model->eval();
  const at::Tensor image = at::randn({2, 20, 20, 20});
  at::Tensor mask = at::ones({20, 20, 20}, at::kBool);
  mask.slice(2, 15, 20).fill_(false);
  TilingOptions options;
  options.tile_input = {21, 21, 21};
  options.batch_size = 4;
  const ImagePrediction tiled = predict_image(model, image, mask, options);
  ASSERT_EQ(tiled.mean.sizes(), (std::vector<int64_t>{3, 20, 20, 20}));

  const int64_t output = 27;  // three tiles of 9
  const int64_t input = model->backbone().input_size_for(output);
  ASSERT_EQ(model->backbone().output_size(input), output);
  const int64_t start = -(input / 2 - output / 2);
  torch::NoGradGuard no_grad;
  const at::Tensor padded = data::crop_padded(image, {start, start, start}, {input, input, input});
  const at::Tensor padded_mask =
      data::crop_padded(mask.unsqueeze(0).to(at::kFloat), {0, 0, 0}, {output, output, output})[0]
          .gt(0.5);
  const nn::ModelOutput whole = model->forward(padded.unsqueeze(0), padded_mask.unsqueeze(0));
  const auto inside = [](const at::Tensor& maps) {
    return maps.slice(1, 0, 20).slice(2, 0, 20).slice(3, 0, 20);
  };
  EXPECT_LT((tiled.mean - inside(whole.mean_logits[0])).abs().max().item<double>(), 1e-5);
  EXPECT_LT((tiled.cov_diag - inside(whole.stochastic->cov_diag[0])).abs().max().item<double>(),
            1e-5);
  EXPECT_LT((tiled.cov_factor - inside(whole.stochastic->cov_factor[0])).abs().max().item<double>(),
            1e-5);
}

}  // namespace
}  // namespace ssn::train
