#include "ssn/nn/deepmedic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "golden.h"
#include "ssn/nn/segmentation_model.h"

namespace ssn::nn {
namespace {

using ssn::testing::error_of;
using ssn::testing::golden_dir;
using ::testing::HasSubstr;

// A file written by Python's torch.save: a dict of name -> tensor.
std::map<std::string, torch::Tensor> load_tensor_dict(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  const c10::IValue value = torch::pickle_load(bytes);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& item : value.toGenericDict()) {
    tensors[item.key().toStringRef()] = item.value().toTensor();
  }
  return tensors;
}

// The reference's state_dict keys are the backbone's own names, and mean_l / log_cov_diag_l /
// cov_factor_l for the head: ssn prefixes them with "backbone." and "head.".
std::string reference_key(const std::string& ours) {
  for (const char* prefix : {"backbone.", "head."}) {
    if (ours.rfind(prefix, 0) == 0) return ours.substr(std::string(prefix).size());
  }
  return ours;
}

// The reference's state_dict is a collections.OrderedDict with a _metadata attribute, which
// LibTorch 1.13's unpickler cannot build; the Python oracle re-saves it as a plain dict.
std::map<std::string, torch::Tensor> load_reference_state_dict(const std::filesystem::path& path) {
  const auto plain = std::filesystem::temp_directory_path() /
                     ("ssn_state_dict_" + std::to_string(::getpid()) + ".pt");
  const std::string command =
      "/usr/bin/python3 -c \"import sys, torch; "
      "torch.save(dict(torch.load(sys.argv[1])), sys.argv[2])\" '" +
      path.string() + "' '" + plain.string() + "'";
  if (std::system(command.c_str()) != 0) return {};
  auto tensors = load_tensor_dict(plain);
  std::filesystem::remove(plain);
  return tensors;
}

template <typename Backbone>
void expect_reference_outputs(const std::string& folder, std::shared_ptr<Backbone> backbone) {
  const auto checkpoint = golden_dir() / folder / "state_dict.pt";
  ASSERT_TRUE(std::filesystem::is_regular_file(checkpoint)) << "missing golden file " << checkpoint;
  const auto state = load_reference_state_dict(checkpoint);
  if (state.empty()) GTEST_SKIP() << "python3 with torch is needed to convert the checkpoint";
  const auto io = load_tensor_dict(golden_dir() / folder / "io.pt");
  SegmentationModel model(
      backbone, SegmentationModelOptions(ModelKind::kLowRank, /*num_classes=*/4).rank(10));
  size_t matched = 0;
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      const auto found = state.find(reference_key(item.key()));
      ASSERT_NE(found, state.end()) << "no reference tensor for " << item.key();
      ASSERT_EQ(found->second.sizes(), item.value().sizes()) << item.key();
      item.value().copy_(found->second);
      ++matched;
    }
    for (auto& item : model->named_buffers()) {
      const auto found = state.find(reference_key(item.key()));
      ASSERT_NE(found, state.end()) << "no reference tensor for " << item.key();
      item.value().copy_(found->second);
      ++matched;
    }
  }
  EXPECT_EQ(matched, state.size()) << "every reference tensor has its place in ssn's model";
  model->eval();
  torch::NoGradGuard no_grad;
  const ModelOutput out = model->forward(io.at("input"), io.at("sampling_mask"));
  ASSERT_TRUE(out.stochastic.has_value());
  EXPECT_LT((out.mean_logits - io.at("logit_mean")).abs().max().item<double>(), 1e-4);
  EXPECT_LT((out.stochastic->cov_diag - io.at("cov_diag")).abs().max().item<double>(), 1e-4);
  EXPECT_LT((out.stochastic->cov_factor - io.at("cov_factor")).abs().max().item<double>(), 1e-4);
}

TEST(DeepMedic, ThreeDimensionalMatchesTheReferenceCheckpoint) {
  expect_reference_outputs("deepmedic_3d", std::make_shared<DeepMedic3dImpl>(DeepMedicOptions(4)));
}

TEST(DeepMedic, TwoDimensionalMatchesTheReferenceCheckpoint) {
  expect_reference_outputs("deepmedic_2d", std::make_shared<DeepMedic2dImpl>(DeepMedicOptions(4)));
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
