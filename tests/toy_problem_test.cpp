#include "ssn/toy/toy_problem.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace ssn::toy {
namespace {

TEST(ToyProblem, TargetsShareTheFirstThirdAndDisagreeOnTheMiddle) {
  const at::Tensor targets = toy_targets(21);
  ASSERT_EQ(targets.sizes(), at::IntArrayRef({2, 21}));
  EXPECT_TRUE(targets.slice(1, 0, 7).eq(1).all().item<bool>());
  EXPECT_TRUE(targets[0].slice(0, 7, 14).eq(1).all().item<bool>());
  EXPECT_TRUE(targets[1].slice(0, 7, 14).eq(0).all().item<bool>());
  EXPECT_TRUE(targets.slice(1, 14, 21).eq(0).all().item<bool>());
}

TEST(ToyProblem, LogLikelihoodOfCertainLogitsIsExact) {
  const at::Tensor targets = toy_targets(6);
  // Logits of +-40 give probability 1 - 4e-18 to the first target: log p ~ 0 and ~ -80.
  const at::Tensor eta = 40.0 * (2 * targets[0] - 1).unsqueeze(0).repeat({4, 1});
  const at::Tensor ll = toy_log_likelihood(eta, targets);
  EXPECT_NEAR(ll[0].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(ll[1].item<double>(), -2 * 40.0, 1e-9);  // two middle pixels wrong
}

TEST(ToyProblem, ShortRunAlreadySeparatesLowRankFromDiagonal) {
  ToyOptions options;
  options.mean_steps = 200;
  options.joint_steps = 800;
  options.num_eval_samples = 4000;
  const ToyResult result = run_toy_problem(options);
  // The diagonal model cannot beat 7 ln(1/2); the low-rank one must already be clearly better.
  EXPECT_LT(result.diagonal.log_likelihood, 7 * std::log(0.5) + 0.05);
  EXPECT_GT(result.low_rank.log_likelihood, result.diagonal.log_likelihood + 2.0);
  EXPECT_EQ(result.low_rank.covariance.sizes(), at::IntArrayRef({21, 21}));
  const at::Tensor figure = render_toy_figure(result);
  EXPECT_EQ(figure.dim(), 3);
  EXPECT_EQ(figure.size(2), 3);
  EXPECT_EQ(figure.scalar_type(), at::kByte);
}

TEST(ToyProblem, RejectsBadOptions) {
  ToyOptions options;
  options.num_mc_samples = 7;
  EXPECT_THROW(run_toy_problem(options), c10::Error);
  options = {};
  options.num_pixels = 20;
  try {
    run_toy_problem(options);
    FAIL() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(),
                ::testing::HasSubstr("num_pixels must be a positive multiple of 3, got 20"));
  }
}

}  // namespace
}  // namespace ssn::toy
