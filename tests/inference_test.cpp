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
  return nn::SegmentationModel(backbone, nn::ModelKind::kLowRank, 3, 2);
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
  nn::SegmentationModel model(backbone, nn::ModelKind::kDeterministic, 2, 0);
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

}  // namespace
}  // namespace ssn::train
