#include "ssn/nn/stochastic_segmentation_head.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "golden.h"

namespace ssn::nn {
namespace {

using ssn::testing::error_of;

using ::testing::HasSubstr;
using testing::load_golden;
using testing::max_relative_error;
using testing::to_tensor;

TEST(GoldenStochasticSegmentationHead, MatchesEveryCaseInFloat64) {
  const auto golden = load_golden("ssn_head.json");
  ASSERT_FALSE(golden["cases"].empty());
  for (const auto& c : golden["cases"]) {
    const auto dims = static_cast<int64_t>(c["spatial"].size());
    SCOPED_TRACE(std::to_string(dims) + "-D case");
    StochasticSegmentationHead head(StochasticSegmentationHeadOptions(c["features"].get<int64_t>(),
                                                                      c["classes"].get<int64_t>(),
                                                                      c["rank"].get<int64_t>())
                                        .epsilon(c["epsilon"].get<double>())
                                        .dimension(dims));
    head->to(torch::kDouble);
    {
      torch::NoGradGuard no_grad;
      auto params = head->named_parameters();
      for (const std::string layer : {"mean", "log_cov_diag", "cov_factor"}) {
        params[layer + "_l.weight"].copy_(to_tensor(c["weights"][layer]));
        params[layer + "_l.bias"].copy_(to_tensor(c["biases"][layer]));
      }
    }
    const HeadOutput out = head->forward(to_tensor(c["input_features"]), to_tensor(c["mask"]));
    EXPECT_LT(max_relative_error(out.mean_logits, to_tensor(c["mean"])), 1e-12);
    EXPECT_LT(max_relative_error(out.distribution.cov_diag(), to_tensor(c["cov_diag"])), 1e-12);
    EXPECT_LT(max_relative_error(out.distribution.cov_factor(), to_tensor(c["cov_factor"])), 1e-12);
    EXPECT_TRUE(
        out.distribution.loc().equal(out.mean_logits.reshape({out.mean_logits.size(0), -1})));
    EXPECT_TRUE(
        out.distribution.cov_diag().equal(out.cov_diag.reshape({out.cov_diag.size(0), -1})));
  }
}

TEST(StochasticSegmentationHead, FactorMapChannelsAreRankMajor) {
  const int64_t classes = 3, rank = 2;
  StochasticSegmentationHead head(StochasticSegmentationHeadOptions(4, classes, rank));
  const HeadOutput out = head->forward(torch::randn({2, 4, 5, 6}));
  ASSERT_EQ(out.cov_factor.sizes(), at::IntArrayRef({2, classes * rank, 5, 6}));
  ASSERT_EQ(out.distribution.cov_factor().sizes(), at::IntArrayRef({2, classes * 30, rank}));
  ASSERT_EQ(out.distribution.event_shape(), std::vector<int64_t>({classes, 5, 6}));
  for (int64_t k = 0; k < classes * rank; ++k) {
    const int64_t r = k / classes, c = k % classes;
    const at::Tensor from_distribution =
        out.distribution.cov_factor().select(2, r).reshape({2, classes, 5, 6}).select(1, c);
    EXPECT_TRUE(out.cov_factor.select(1, k).equal(from_distribution)) << "channel " << k;
  }
}

TEST(StochasticSegmentationHead, OutsideTheMaskFactorIsZeroAndDiagonalIsEpsilon) {
  StochasticSegmentationHead head(StochasticSegmentationHeadOptions(3, 2, 4).dimension(3));
  torch::Tensor mask = torch::ones({1, 2, 3, 4});
  mask[0][1] = 0;
  const HeadOutput out = head->forward(torch::randn({1, 3, 2, 3, 4}), mask);
  const auto outside = out.cov_factor.select(2, 1);
  EXPECT_TRUE(outside.eq(0).all().item<bool>());
  EXPECT_TRUE(out.cov_diag.select(2, 1).eq(static_cast<float>(1e-5)).all().item<bool>());
  EXPECT_TRUE(out.cov_diag.select(2, 0).gt(1e-5).all().item<bool>());
}

TEST(StochasticSegmentationHead, RankZeroIsTheDiagonalModel) {
  StochasticSegmentationHead head(StochasticSegmentationHeadOptions(3, 2, 0));
  const HeadOutput out = head->forward(torch::randn({2, 3, 4, 4}));
  EXPECT_EQ(out.distribution.rank(), 0);
  EXPECT_EQ(out.cov_factor.size(1), 0);
  EXPECT_EQ(head->named_parameters().size(), 4u);  // mean_l and log_cov_diag_l only
  EXPECT_NO_THROW(out.distribution.log_prob(out.distribution.loc()));
}

TEST(StochasticSegmentationHead, RejectsBadOptionsAndInput) {
  EXPECT_THAT(
      error_of([] { StochasticSegmentationHead(StochasticSegmentationHeadOptions(3, 2, -1)); }),
      HasSubstr("rank must be >= 0 (0 = diagonal covariance), got -1"));
  EXPECT_THAT(error_of([] {
                StochasticSegmentationHead(StochasticSegmentationHeadOptions(3, 2, 1).dimension(4));
              }),
              HasSubstr("dimension must be 2 or 3, got 4"));
  EXPECT_THAT(
      error_of([] { StochasticSegmentationHead(StochasticSegmentationHeadOptions(3, 1, 1)); }),
      HasSubstr("num_classes must be >= 2 (background included), got 1"));
  StochasticSegmentationHead head(StochasticSegmentationHeadOptions(3, 2, 1));
  EXPECT_THAT(error_of([&] {
                head->forward(torch::randn({1, 4, 5, 5}));
              }),
              HasSubstr("features must have shape [B, F = 3, *spatial] with 2 spatial dimensions, "
                        "got [1, 4, 5, 5]"));
  EXPECT_THAT(error_of([&] {
                head->forward(torch::randn({1, 3, 5, 5}), torch::ones({1, 5, 4}));
              }),
              HasSubstr("mask must have shape [B, *spatial] = [1, 5, 5], got [1, 5, 4]"));
}

}  // namespace
}  // namespace ssn::nn
