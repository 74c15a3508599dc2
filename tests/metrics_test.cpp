#include "ssn/metrics/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "golden.h"
#include "ssn/metrics/overlap.h"

namespace ssn::metrics {
namespace {

using ssn::testing::error_of;

using ::testing::HasSubstr;
using testing::load_golden;
using testing::to_tensor;

// NaN where the golden value is null, else within 1e-12.
void expect_value(double actual, const nlohmann::json& expected, const std::string& what) {
  if (expected.is_null()) {
    EXPECT_TRUE(std::isnan(actual)) << what << ": expected NaN, got " << actual;
  } else {
    EXPECT_NEAR(actual, expected.get<double>(), 1e-12) << what;
  }
}

TEST(GoldenMetrics, MatchEveryCase) {
  const auto golden = load_golden("metrics.json");
  ASSERT_FALSE(golden["cases"].empty());
  int index = 0;
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE("case " + std::to_string(index++));
    const int64_t classes = c["num_classes"].get<int64_t>();
    const at::Tensor samples = to_tensor(c["samples"], at::kLong);
    const at::Tensor annotations = to_tensor(c["annotations"], at::kLong);
    const DistributionMetrics m = distribution_metrics(samples, annotations, classes);
    expect_value(m.ged, c["ged"], "ged");
    expect_value(m.diversity, c["diversity"], "diversity");
    expect_value(m.annotator_diversity, c["annotator_diversity"], "annotator_diversity");
    expect_value(m.hm_iou, c["hm_iou"], "hm_iou");

    if (!c["ncc"].is_null()) {
      // Golden probabilities are channels-last [N, *spatial, C]; ours are [N, C, *spatial].
      const at::Tensor probabilities = to_tensor(c["sample_probabilities_channels_last"]);
      expect_value(variance_ncc(probabilities.movedim(-1, 1), annotations), c["ncc"], "ncc");
    }

    const auto channels = foreground_classes(classes);
    const at::Tensor first_sample_dice =
        dice(pairwise_overlap(PackedLabels(samples.slice(0, 0, 1), classes, channels),
                              PackedLabels(annotations, classes, channels)))[0];  // [M, K-1]
    const auto& expected = c["dice_first_sample_vs_each_annotation"];
    ASSERT_EQ(first_sample_dice.size(0), static_cast<int64_t>(expected.size()));
    for (int64_t j = 0; j < first_sample_dice.size(0); ++j) {
      for (int64_t k = 0; k < first_sample_dice.size(1); ++k) {
        expect_value(first_sample_dice[j][k].item<double>(), expected[j][k],
                     "dice annotation " + std::to_string(j) + " class " + std::to_string(k + 1));
      }
    }
  }
}

TEST(Overlap, MatchesAPlainCountOnOddSizesAndRegions) {
  // 3 x 67 pixels: not a multiple of 64, so the last word is partial.
  const at::Tensor a = at::randint(4, {5, 3, 67}, at::kLong);
  const at::Tensor b = at::randint(4, {3, 3, 67}, at::kLong);
  const std::vector<ClassSet> channels = {{1}, {2}, {3}, {1, 2, 3}, {1, 3}};
  const Overlap overlap =
      pairwise_overlap(PackedLabels(a, 4, channels), PackedLabels(b, 4, channels));
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      for (size_t k = 0; k < channels.size(); ++k) {
        at::Tensor in_a = at::zeros({3, 67}, at::kBool), in_b = at::zeros({3, 67}, at::kBool);
        for (int64_t cls : channels[k]) {
          in_a |= a[i].eq(cls);
          in_b |= b[j].eq(cls);
        }
        EXPECT_EQ(overlap.intersection[i][j][k].item<int64_t>(),
                  (in_a & in_b).sum().item<int64_t>());
        EXPECT_EQ(overlap.size_a[i][k].item<int64_t>(), in_a.sum().item<int64_t>());
      }
    }
  }
}

TEST(Overlap, SymmetricPassEqualsTheFullOne) {
  const at::Tensor a = at::randint(3, {7, 130}, at::kLong);
  const PackedLabels packed(a, 3, foreground_classes(3));
  EXPECT_TRUE(pairwise_overlap(packed, packed, true)
                  .intersection.equal(pairwise_overlap(packed, packed, false).intersection));
}

TEST(MinCostAssignment, FindsTheOptimumOfSmallMatricesByBruteForce) {
  for (int trial = 0; trial < 20; ++trial) {
    const at::Tensor cost = at::rand({6, 6}, at::kDouble);
    std::vector<int64_t> perm = {0, 1, 2, 3, 4, 5};
    double best = 1e9;
    do {
      double total = 0;
      for (int64_t i = 0; i < 6; ++i) total += cost[i][perm[i]].item<double>();
      best = std::min(best, total);
    } while (std::next_permutation(perm.begin(), perm.end()));
    std::vector<int64_t> assignment;
    EXPECT_NEAR(min_cost_assignment(cost, &assignment), best, 1e-12);
    std::vector<int64_t> sorted = assignment;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, std::vector<int64_t>({0, 1, 2, 3, 4, 5}));
  }
}

TEST(Metrics, NccOfLabelMapsEqualsNccOfTheirOneHotProbabilities) {
  const at::Tensor samples = at::randint(3, {6, 9, 11}, at::kLong);
  const at::Tensor annotations = at::randint(3, {2, 9, 11}, at::kLong);
  const at::Tensor one_hot = at::one_hot(samples, 3).movedim(-1, 1).to(at::kDouble);
  EXPECT_NEAR(variance_ncc_of_labels(samples, annotations, 3), variance_ncc(one_hot, annotations),
              1e-12);
}

TEST(Metrics, HmIouIsNanWhenSamplesAreNotAMultipleOfAnnotations) {
  const at::Tensor samples = at::randint(2, {5, 8, 8}, at::kLong);
  const at::Tensor annotations = at::randint(2, {2, 8, 8}, at::kLong);
  EXPECT_TRUE(std::isnan(distribution_metrics(samples, annotations, 2).hm_iou));
}

TEST(Metrics, IdenticalSamplesAndAnnotationsHaveZeroGedAndFullHmIou) {
  const at::Tensor maps = at::randint(3, {4, 10, 10}, at::kLong);
  const DistributionMetrics m = distribution_metrics(maps, maps, 3);
  EXPECT_NEAR(m.ged, 0.0, 1e-15);
  EXPECT_NEAR(m.hm_iou, 1.0, 1e-15);
  EXPECT_NEAR(m.diversity, m.annotator_diversity, 1e-15);
}

TEST(Metrics, CalibrationAndEntropyOfKnownMaps) {
  // Two samples that disagree on every pixel: frequency 1/2 for both classes, entropy ln 2.
  const at::Tensor samples = at::stack({at::zeros({4, 4}, at::kLong), at::ones({4, 4}, at::kLong)});
  EXPECT_TRUE(at::allclose(entropy_map(samples, 2), at::full({4, 4}, std::log(2.0), at::kDouble)));
  // Confidence 1/2 everywhere against one annotation of all class 1: ECE_c = 1/2 for both classes.
  const at::Tensor probabilities = class_frequencies(samples, 2);
  EXPECT_NEAR(classwise_ece(probabilities, at::ones({1, 4, 4}, at::kLong)), 0.5, 1e-15);
  // Perfectly calibrated: confidence equals the annotators' frequency.
  const at::Tensor annotations =
      at::stack({at::zeros({4, 4}, at::kLong), at::ones({4, 4}, at::kLong)});
  EXPECT_NEAR(classwise_ece(probabilities, annotations), 0.0, 1e-15);
}

// Confidences of class 1 spread over bins 0, 3 (twice), 6 and 9 of 10, against one annotation:
// ECE_1 = (|0.05 - 0| + |0.35 + 0.31 - 1 - 0| + |0.65 - 1| + |0.95 - 1|) / 5 = 0.79 / 5, and
// class 0 (confidences 1 - p) gives the same sum; a per-pixel or one-bin ECE would not.
TEST(Metrics, EceSumsSignedGapsWithinEachBin) {
  const at::Tensor p1 = at::tensor({0.05, 0.35, 0.31, 0.65, 0.95}, at::kDouble).reshape({1, 5});
  const at::Tensor probabilities = at::cat({1 - p1, p1}).reshape({2, 1, 5});
  const at::Tensor annotation = at::tensor({0, 1, 0, 1, 1}, at::kLong).reshape({1, 1, 5});
  EXPECT_NEAR(classwise_ece(probabilities, annotation, /*bins=*/10), 0.79 / 5, 1e-12);
  // One bin: |sum of gaps| / S per class.
  EXPECT_NEAR(classwise_ece(probabilities, annotation, /*bins=*/1),
              std::abs(0.05 + 0.35 + 0.31 + 0.65 + 0.95 - 3) / 5, 1e-12);
}

TEST(Metrics, RejectBadInputWithClearMessages) {
  EXPECT_THAT(
      error_of([] {
        distribution_metrics(at::zeros({2, 4, 4}, at::kLong), at::zeros({2, 4, 5}, at::kLong), 2);
      }),
      HasSubstr("samples and annotations must have the same spatial shape, got [4, 4] and "
                "[4, 5]"));
  EXPECT_THAT(
      error_of([] {
        distribution_metrics(at::full({2, 4, 4}, 3, at::kLong), at::zeros({2, 4, 4}, at::kLong), 3);
      }),
      HasSubstr("labels must lie in [0, 3), got values in [3, 3]"));
  EXPECT_THAT(
      error_of([] {
        distribution_metrics(at::zeros({2, 4, 4}, at::kLong), at::zeros({0, 4, 4}, at::kLong), 2);
      }),
      HasSubstr("annotations must have shape [M >= 1, *spatial], got [0, 4, 4]"));
}

}  // namespace
}  // namespace ssn::metrics
