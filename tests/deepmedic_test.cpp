#include "ssn/nn/deepmedic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "ssn/config/config.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/torch_file.h"
#include "ssn/nn/segmentation_model.h"
#include "ssn/train/checkpoint.h"
#include "ssn/train/model_factory.h"
#include "ssn/train/pytorch_checkpoint.h"

namespace ssn::nn {
namespace {

using ssn::testing::error_of;
using ssn::testing::golden_dir;
using ::testing::HasSubstr;

// A file written by Python's torch.save (a dict or OrderedDict of name -> tensor), read by ssn's
// own reader: no Python involved.
std::map<std::string, torch::Tensor> load_tensor_dict(const std::filesystem::path& path) {
  std::map<std::string, torch::Tensor> tensors;
  for (const io::NamedTensor& t : io::read_torch_state_dict(path)) tensors[t.name] = t.tensor;
  return tensors;
}

// The reference's checkpoint goes through `ssn import-checkpoint`'s importer with the reference's
// own config (BraTS, rank 10), the ssn checkpoint it writes loads as predict loads it, and the
// model's outputs match the reference's on the same input.
void expect_reference_outputs(const std::string& folder, int64_t dimensions) {
  const auto pytorch = golden_dir() / folder / "state_dict.pt";
  ASSERT_TRUE(std::filesystem::is_regular_file(pytorch)) << "missing golden file " << pytorch;
  nlohmann::json json = nlohmann::json::parse(io::read_text_file(
      std::filesystem::path(SSN_SOURCE_DIR) / "tests/data/reference/rank_10_mc_20_patch_110.json"));
  json["model"]["StochasticDeepMedic"]["dimensions"] = dimensions;
  if (dimensions == 2) json["training"].erase("patch_augmentation");  // planes of 3-D volumes
  const config::Config config = config::parse_config(json, "the reference's config");
  const auto checkpoint = std::filesystem::temp_directory_path() /
                          ("ssn_imported_" + std::to_string(::getpid()) + "_" + folder + ".pt");
  const train::ImportSummary summary =
      train::import_pytorch_checkpoint(pytorch, config, checkpoint, /*seed=*/0);
  EXPECT_EQ(summary.naming, train::PytorchNaming::kReference);
  EXPECT_EQ(summary.tensors, io::read_torch_state_dict(pytorch).size())
      << "every reference tensor has its place in ssn's model";
  SegmentationModel model = train::build_model(config.model);
  train::load_model_weights(checkpoint, *model);
  std::filesystem::remove(checkpoint);
  const auto io = load_tensor_dict(golden_dir() / folder / "io.pt");
  model->eval();
  torch::NoGradGuard no_grad;
  const ModelOutput out = model->forward(io.at("input"), io.at("sampling_mask"));
  ASSERT_TRUE(out.stochastic.has_value());
  const double error =
      std::max({(out.mean_logits - io.at("logit_mean")).abs().max().item<double>(),
                (out.stochastic->cov_diag - io.at("cov_diag")).abs().max().item<double>(),
                (out.stochastic->cov_factor - io.at("cov_factor")).abs().max().item<double>()});
  std::printf("%s: max |ssn - reference| over mean, cov_diag, cov_factor = %.3g\n", folder.c_str(),
              error);
  EXPECT_LT(error, 1e-4);
}

TEST(DeepMedic, ThreeDimensionalMatchesTheReferenceCheckpoint) {
  expect_reference_outputs("deepmedic_3d", 3);
}

TEST(DeepMedic, TwoDimensionalMatchesTheReferenceCheckpoint) {
  expect_reference_outputs("deepmedic_2d", 2);
}

// A checkpoint of another seed, written by the reference's own code with Debian's PyTorch
// (tests/python/reference_deepmedic_vectors.py).
TEST(DeepMedic, TwoDimensionalMatchesAReferenceCheckpointOfAnotherSeed) {
  expect_reference_outputs("deepmedic_2d_seed1", 2);
}

TEST(DeepMedic, SizeArithmetic) {
  DeepMedic3d model(DeepMedicOptions(4));
  EXPECT_EQ(model->output_size(85), 5);
  EXPECT_EQ(model->output_size(110), 30);  // the reference's training patch
  EXPECT_EQ(model->input_size_for(5), 85);
  EXPECT_EQ(model->input_size_for(30), 110);
  EXPECT_EQ(model->input_size_for(31), 115);
  EXPECT_THAT(error_of([&] { model->output_size(84); }),
              HasSubstr("an input of 84 voxels is too small; the smallest is 85"));
  const torch::Tensor features = model->forward(torch::randn({1, 4, 85, 90, 95}));
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{1, 50, 5, 10, 15}));
}

}  // namespace
}  // namespace ssn::nn
