#include "ssn/distributions/low_rank_normal.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "golden.h"

namespace ssn {
namespace {

using ssn::testing::error_of;

using ::testing::HasSubstr;
using testing::load_golden;
using testing::max_relative_error;
using testing::to_tensor;

LowRankNormal random_distribution(int64_t batch, int64_t events, int64_t rank, uint64_t seed,
                                  std::vector<int64_t> event_shape = {}) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  return LowRankNormal(at::randn({batch, events}, gen, opts),
                       0.7 * at::randn({batch, events, rank}, gen, opts),
                       at::rand({batch, events}, gen, opts) + 0.2, std::move(event_shape));
}

class GoldenLowRankNormal : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(GoldenLowRankNormal, MatchesEveryCase) {
  const at::ScalarType dtype = GetParam();
  const double tolerance = dtype == at::kDouble ? 1e-9 : 1e-4;
  const auto golden = load_golden("lowrank_mvn.json");
  ASSERT_FALSE(golden["cases"].empty());
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE("case with event_size " + std::to_string(c["event_size"].get<int>()));
    const LowRankNormal dist(to_tensor(c["loc"], dtype), to_tensor(c["cov_factor"], dtype),
                             to_tensor(c["cov_diag"], dtype));
    EXPECT_EQ(dist.rank(), c["rank"].get<int64_t>());
    EXPECT_LT(
        max_relative_error(dist.log_prob(to_tensor(c["value"], dtype)), to_tensor(c["log_prob"])),
        tolerance);
    EXPECT_LT(max_relative_error(dist.entropy(), to_tensor(c["entropy"])), tolerance);
    EXPECT_LT(max_relative_error(dist.variance(), to_tensor(c["variance"])), tolerance);
    const at::Tensor samples =
        dist.rsample_from_noise(to_tensor(c["eps_W"], dtype), to_tensor(c["eps_D"], dtype));
    EXPECT_LT(max_relative_error(samples, to_tensor(c["rsample"]), 1e-3), tolerance);
    // log_prob of a batch of values [M, B, N] agrees with one call per value. Only in float64: the
    // two take different BLAS paths, and in float32 the Woodbury difference of two large terms
    // (x^T D^-1 x and the correction, ~1e5 for case 3) differs by an ulp between them, 0.016 on
    // LibTorch 2.11; the float32 values themselves are checked against the golden ones above.
    if (dtype == at::kDouble) {
      const at::Tensor batched = dist.log_prob(samples);
      for (int64_t m = 0; m < samples.size(0); ++m) {
        EXPECT_LT(max_relative_error(batched[m], dist.log_prob(samples[m])), tolerance);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GoldenLowRankNormal, ::testing::Values(at::kDouble, at::kFloat),
                         [](const auto& info) {
                           return info.param == at::kDouble ? std::string("Float64")
                                                            : std::string("Float32");
                         });

TEST(LowRankNormal, LogProbAndEntropyMatchTheDenseCovariance) {
  for (int64_t rank : {0, 1, 4}) {
    const LowRankNormal dist = random_distribution(2, 9, rank, 7 + rank);
    const at::Tensor cov = dist.covariance();
    const at::Tensor value = at::randn({2, 9}, at::kDouble);
    const at::Tensor diff = (value - dist.loc()).unsqueeze(-1);
    const at::Tensor maha =
        at::matmul(diff.transpose(1, 2), at::linalg_solve(cov, diff)).squeeze(-1).squeeze(-1);
    const at::Tensor logdet = std::get<1>(at::linalg_slogdet(cov));
    const double log2pi = std::log(2 * M_PI);
    const at::Tensor expected = -0.5 * (maha + logdet + 9 * log2pi);
    EXPECT_LT(max_relative_error(dist.log_prob(value), expected), 1e-10) << "rank " << rank;
    EXPECT_LT(max_relative_error(dist.entropy(), 0.5 * 9 * (1 + log2pi) + 0.5 * logdet), 1e-10);
  }
}

TEST(LowRankNormal, EmpiricalCovarianceOfSamplesMatchesLowRankPlusDiagonal) {
  const LowRankNormal dist = random_distribution(1, 6, 2, 11);
  constexpr int64_t kSamples = 40000;
  at::Generator gen = at::detail::createCPUGenerator(5);
  const at::Tensor samples = dist.rsample(kSamples, gen).squeeze(1);  // [M, N]
  const at::Tensor centred = samples - samples.mean(0, /*keepdim=*/true);
  const at::Tensor empirical = at::matmul(centred.t(), centred) / (kSamples - 1);
  const at::Tensor expected = dist.covariance()[0];
  // Standard error of a sample covariance: sqrt((S_ii S_jj + S_ij^2) / n); allow 5 of them.
  const at::Tensor diag = expected.diagonal();
  const at::Tensor stderr_ =
      ((diag.unsqueeze(0) * diag.unsqueeze(1) + expected.pow(2)) / kSamples).sqrt();
  EXPECT_TRUE(((empirical - expected).abs() <= 5 * stderr_).all().item<bool>())
      << "empirical\n"
      << empirical << "\nexpected\n"
      << expected;
  EXPECT_LT((samples.mean(0) - dist.loc()[0]).abs().max().item<double>(),
            5 * std::sqrt(diag.max().item<double>() / kSamples));
}

TEST(LowRankNormal, AntitheticPairsAverageExactlyToTheMean) {
  const LowRankNormal dist = random_distribution(3, 10, 3, 2);
  const at::Tensor samples = dist.rsample_antithetic(8);
  ASSERT_EQ(samples.sizes(), at::IntArrayRef({8, 3, 10}));
  const at::Tensor pair_mean = (samples.slice(0, 0, 4) + samples.slice(0, 4, 8)) / 2;
  EXPECT_LT((pair_mean - dist.loc().unsqueeze(0)).abs().max().item<double>(), 1e-14);
  EXPECT_GT((samples[0] - samples[1]).abs().max().item<double>(), 0.0);
}

TEST(LowRankNormal, TemperatureZeroReturnsTheMean) {
  const LowRankNormal dist = random_distribution(2, 12, 3, 3, {3, 4});
  SamplingControls controls;
  controls.temperature = 0.0;
  const at::Tensor samples = dist.rsample(5, c10::nullopt, controls);
  EXPECT_TRUE(samples.eq(dist.loc().unsqueeze(0)).all().item<bool>());
}

TEST(LowRankNormal, TemperatureScalesThePerturbation) {
  const LowRankNormal dist = random_distribution(2, 12, 3, 3);
  const at::Tensor eps_W = at::randn({4, 2, 3}, at::kDouble);
  const at::Tensor eps_D = at::randn({4, 2, 12}, at::kDouble);
  SamplingControls hot;
  hot.temperature = 2.5;
  EXPECT_TRUE(at::allclose(dist.perturbation(eps_W, eps_D, hot),
                           2.5 * dist.perturbation(eps_W, eps_D), 1e-14, 1e-14));
}

TEST(LowRankNormal, ClassWeightZeroFreezesThatClassAtItsMean) {
  const LowRankNormal dist = random_distribution(2, 12, 3, 4, /*event_shape=*/{3, 2, 2});
  SamplingControls controls;
  controls.class_weights = at::tensor({1.0, 0.0, 2.0}, at::kDouble);
  const at::Tensor samples = dist.to_event_shape(dist.rsample(6, c10::nullopt, controls));
  const at::Tensor mean = dist.to_event_shape(dist.loc()).unsqueeze(0);  // [1, B, C, 2, 2]
  EXPECT_TRUE(samples.select(2, 1).eq(mean.select(2, 1)).all().item<bool>());
  EXPECT_FALSE(samples.select(2, 0).eq(mean.select(2, 0)).all().item<bool>());
  EXPECT_FALSE(samples.select(2, 2).eq(mean.select(2, 2)).all().item<bool>());
}

TEST(LowRankNormal, RankWeightsScaleTheLowRankNoiseOnly) {
  const LowRankNormal dist = random_distribution(1, 8, 2, 9);
  const at::Tensor eps_W = at::randn({3, 1, 2}, at::kDouble);
  const at::Tensor eps_D = at::randn({3, 1, 8}, at::kDouble);
  SamplingControls controls;
  controls.rank_weights = at::tensor({0.0, 0.0}, at::kDouble);
  EXPECT_TRUE(at::allclose(dist.perturbation(eps_W, eps_D, controls),
                           dist.cov_diag().sqrt() * eps_D, 1e-14, 1e-14));
  controls.rank_weights = at::tensor({0.0, 3.0}, at::kDouble);
  const at::Tensor expected =
      dist.cov_diag().sqrt() * eps_D +
      3.0 * eps_W.select(2, 1).unsqueeze(-1) * dist.cov_factor().select(2, 1).unsqueeze(0);
  EXPECT_TRUE(at::allclose(dist.perturbation(eps_W, eps_D, controls), expected, 1e-12, 1e-12));
}

TEST(LowRankNormal, DiagonalModelIsIndependentNormals) {
  const at::Tensor loc = at::randn({2, 5}, at::kDouble);
  const at::Tensor var = at::rand({2, 5}, at::kDouble) + 0.5;
  const LowRankNormal dist = LowRankNormal::diagonal(loc, var);
  EXPECT_EQ(dist.rank(), 0);
  const at::Tensor value = at::randn({2, 5}, at::kDouble);
  const at::Tensor expected =
      (-0.5 * ((value - loc).pow(2) / var + var.log() + std::log(2 * M_PI))).sum(-1);
  EXPECT_LT(max_relative_error(dist.log_prob(value), expected), 1e-12);
  EXPECT_TRUE(at::allclose(dist.variance(), var));
}

TEST(LowRankNormal, RejectsBadShapesWithClearMessages) {
  const at::Tensor loc = at::zeros({2, 6}, at::kDouble);
  const at::Tensor diag = at::ones({2, 6}, at::kDouble);
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc.view({12}), at::zeros({2, 6, 1}), diag);
              }),
              HasSubstr("loc must have shape [B, N], got [12]"));
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, at::zeros({2, 5, 1}, at::kDouble), diag);
              }),
              HasSubstr("cov_factor must have shape [B, N, R] = [2, 6, R], got [2, 5, 1]"));
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, at::zeros({2, 6, 1}, at::kDouble), at::ones({2, 3}));
              }),
              HasSubstr("cov_diag must have shape [B, N] = [2, 6], got [2, 3]"));
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, at::zeros({2, 6, 1}, at::kFloat), diag);
              }),
              HasSubstr("cov_factor must have the dtype of loc (Double), got Float"));
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, at::zeros({2, 6, 1}, at::kDouble), diag, {4, 2});
              }),
              HasSubstr("event_shape [4, 2] must have N = 6 elements, got 8"));
}

TEST(LowRankNormal, RejectsNonPositiveOrNonFiniteDiagonal) {
  const at::Tensor loc = at::zeros({1, 3}, at::kDouble);
  const at::Tensor factor = at::zeros({1, 3, 1}, at::kDouble);
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, factor, at::tensor({1.0, 0.0, 1.0}, at::kDouble).view({1, 3}));
              }),
              HasSubstr("cov_diag must be > 0 and finite everywhere, got minimum 0"));
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, factor, at::tensor({1.0, -2.0, 1.0}, at::kDouble).view({1, 3}));
              }),
              HasSubstr("cov_diag must be > 0 and finite everywhere, got minimum -2"));
  EXPECT_THAT(error_of([&] {
                LowRankNormal(loc, factor, at::tensor({1.0, NAN, 1.0}, at::kDouble).view({1, 3}));
              }),
              HasSubstr("cov_diag must be > 0 and finite everywhere"));
  EXPECT_THAT(
      error_of([&] {
        LowRankNormal(loc, factor, at::tensor({1.0, INFINITY, 1.0}, at::kDouble).view({1, 3}));
      }),
      HasSubstr("got a non-finite value"));
}

TEST(LowRankNormal, RejectsBadSamplingRequests) {
  const LowRankNormal dist = random_distribution(1, 6, 2, 1, {3, 2});
  EXPECT_THAT(error_of([&] { dist.rsample_antithetic(5); }),
              HasSubstr("num_samples must be even and >= 2 (pairs of mirrored draws), got 5"));
  EXPECT_THAT(error_of([&] { dist.rsample(0); }), HasSubstr("num_samples must be >= 1, got 0"));
  SamplingControls controls;
  controls.class_weights = at::ones({2}, at::kDouble);
  EXPECT_THAT(error_of([&] { dist.rsample(2, c10::nullopt, controls); }),
              HasSubstr("class_weights must have C = 3 entries (one per class of the event shape "
                        "[3, 2]), got shape [2]"));
  controls = {};
  controls.rank_weights = at::ones({3}, at::kDouble);
  EXPECT_THAT(error_of([&] { dist.rsample(2, c10::nullopt, controls); }),
              HasSubstr("rank_weights must have R = 2 entries (one per rank), got shape [3]"));
  controls = {};
  controls.temperature = -1;
  EXPECT_THAT(error_of([&] { dist.rsample(2, c10::nullopt, controls); }),
              HasSubstr("temperature must be finite and >= 0, got -1"));
  EXPECT_THAT(error_of([&] {
                dist.rsample_from_noise(at::zeros({2, 1, 3}, at::kDouble),
                                        at::zeros({2, 1, 6}, at::kDouble));
              }),
              HasSubstr("eps_W must have shape [M, B, R] = [M, 1, 2], got [2, 1, 3]"));
  EXPECT_THAT(error_of([&] {
                dist.log_prob(at::zeros({1, 5}, at::kDouble));
              }),
              HasSubstr("value must have shape [B, N] or [M, B, N] with B = 1 and N = 6"));
}

TEST(LowRankNormal, SingularCapacitanceIsAnErrorNotAnAbort) {
  const at::Tensor loc = at::zeros({1, 3}, at::kDouble);
  at::Tensor factor = at::ones({1, 3, 2}, at::kDouble);
  factor[0][1][0] = NAN;
  const LowRankNormal dist(loc, factor, at::ones({1, 3}, at::kDouble));
  const std::string expected = "capacitance matrix I + P^T D^-1 P is not positive definite";
  EXPECT_THAT(error_of([&] { dist.log_prob(loc); }), HasSubstr(expected));
  EXPECT_THAT(error_of([&] { dist.entropy(); }), HasSubstr(expected));
  EXPECT_NO_THROW(dist.rsample(2));  // sampling needs no factorisation
}

}  // namespace
}  // namespace ssn

namespace ssn {
namespace {

TEST(ClassArgmax, EqualsArgmaxTiesIncluded) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  for (int64_t classes : {1, 2, 3, 5}) {
    // Rounded logits make ties common; argmax returns the first maximum, and so must this.
    const at::Tensor logits = (at::randn({4, classes, 7, 6}, gen) * 2).round();
    const at::Tensor expected = logits.argmax(/*dim=*/1).to(at::kByte);
    const at::Tensor got = class_argmax(logits, 1);
    EXPECT_EQ(got.scalar_type(), at::kByte);
    EXPECT_TRUE(at::equal(got, expected)) << classes << " classes";
    EXPECT_TRUE(at::equal(class_argmax(logits.transpose(0, 1).contiguous(), 0), expected));
  }
}

}  // namespace
}  // namespace ssn
