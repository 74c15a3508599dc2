#include "ssn/evaluation/evaluate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "golden.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::evaluation {
namespace {

using ssn::testing::error_of;

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class EvaluateFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
    root_ = fs::temp_directory_path() / ("ssn_evaluate_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "samples");
  }
  void TearDown() override { fs::remove_all(root_); }

  // Writes N samples and M annotations of one case; returns them as label tensors.
  std::pair<at::Tensor, at::Tensor> write_case(const std::string& id, int64_t n, int64_t m,
                                               int64_t classes, const std::string& ext = ".png",
                                               int64_t scale = 1) {
    const at::Tensor samples = at::randint(classes, {n, 12, 10}, at::kLong);
    const at::Tensor annotations = at::randint(classes, {m, 12, 10}, at::kLong);
    for (int64_t i = 0; i < n; ++i)
      io::write_label_image(root_ / "samples" / (id + "_s" + std::to_string(i) + ext),
                            samples[i] * scale);
    for (int64_t j = 0; j < m; ++j)
      io::write_label_image(root_ / "samples" / (id + "_l" + std::to_string(j + 1) + ext),
                            annotations[j] * scale);
    return {samples, annotations};
  }
  fs::path root_;
};

TEST_F(EvaluateFolder, FilesGiveTheSameMetricsAsTheTensors) {
  EvaluationOptions options;
  options.num_classes = 2;
  // 0/255 masks: any non-zero value is foreground with two classes.
  const auto [s1, a1] = write_case("case1", 8, 4, 2, ".png", 255);
  const auto [s2, a2] = write_case("case2", 6, 3, 2, ".nii.gz");
  const auto results = evaluate_sample_folder(root_ / "samples", options);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].id, "case1");
  EXPECT_EQ(results[0].num_samples, 8);
  const MetricRow expected1 = evaluate_labels(s1, a1, options);
  const MetricRow expected2 = evaluate_labels(s2, a2, options);
  ASSERT_EQ(results[0].metrics.size(), expected1.size());
  for (size_t k = 0; k < expected1.size(); ++k) {
    EXPECT_EQ(results[0].metrics[k].first, expected1[k].first);
    const auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
    EXPECT_TRUE(same(results[0].metrics[k].second, expected1[k].second)) << expected1[k].first;
    EXPECT_TRUE(same(results[1].metrics[k].second, expected2[k].second)) << expected2[k].first;
  }

  const auto summary = write_evaluation(root_ / "out", results);
  std::ifstream csv(root_ / "out" / "metrics.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header,
            "id,ged,diversity,annotator_diversity,ged_oracle,whole_image_samples,hm_iou,dice_1,ncc,"
            "ece");
  EXPECT_EQ(summary["num_cases"], 2);
  EXPECT_TRUE(summary["num_samples"].is_null());  // 8 and 6
  EXPECT_NEAR(summary["metrics"]["ged"]["mean"].get<double>(),
              (expected1[0].second + expected2[0].second) / 2, 1e-15);
  EXPECT_TRUE(fs::exists(root_ / "out" / "summary.json"));
}

TEST_F(EvaluateFolder, BratsRegionsAddThreeDiceColumns) {
  const auto [samples, annotations] = write_case("c", 4, 2, 4, ".nii.gz");
  EvaluationOptions options;
  options.num_classes = 4;
  options.brats_regions = true;
  const MetricRow row = evaluate_sample_folder(root_ / "samples", options)[0].metrics;
  std::vector<std::string> names;
  for (const auto& [name, value] : row) names.push_back(name);
  EXPECT_THAT(names, ::testing::Contains("dice_wt"));
  EXPECT_THAT(names, ::testing::Contains("dice_tc"));
  EXPECT_THAT(names, ::testing::Contains("dice_et"));
}

// Hand-made labels with known region Dice: annotation [[1, 2, 3, 3], [0, 0, 0, 0]], sample
// [[1, 1, 3, 0], [3, 0, 0, 0]]. Dice = 2 |A and B| / (|A| + |B|): whole tumour {1, 2, 3}: 3 shared
// of 4 + 4 voxels -> 3/4; tumour core {1, 3}: 2 shared of 3 + 4 -> 4/7; enhancing {3}: 1 shared of
// 2 + 2 -> 1/2.
TEST(BratsRegions, DiceOfHandMadeMapsIsTheCountedValue) {
  const at::Tensor annotation = at::tensor({1, 2, 3, 3, 0, 0, 0, 0}, at::kByte).reshape({1, 2, 4});
  const at::Tensor sample = at::tensor({1, 1, 3, 0, 3, 0, 0, 0}, at::kByte).reshape({1, 2, 4});
  EvaluationOptions options;
  options.num_classes = 4;
  options.brats_regions = true;
  std::map<std::string, double> values;
  for (const auto& [name, value] : overlap_metrics(sample, annotation, options)) {
    values[name] = value;
  }
  EXPECT_NEAR(values.at("dice_wt"), 3.0 / 4.0, 1e-12);
  EXPECT_NEAR(values.at("dice_tc"), 4.0 / 7.0, 1e-12);
  EXPECT_NEAR(values.at("dice_et"), 1.0 / 2.0, 1e-12);
}

TEST_F(EvaluateFolder, BadInputIsAnErrorThatNamesTheFileAndWritesNothing) {
  EvaluationOptions options;
  options.num_classes = 3;
  const fs::path dir = root_ / "samples";
  const fs::path out = root_ / "out";
  auto evaluate_into_out = [&] { write_evaluation(out, evaluate_sample_folder(dir, options)); };

  write_case("a", 2, 1, 3);
  io::write_label_image(dir / "a_l2.png", at::zeros({12, 11}, at::kLong));
  EXPECT_THAT(error_of(evaluate_into_out),
              HasSubstr("a_l2.png has shape [12, 11], but a_s0.png has [12, 10]"));
  io::write_label_image(dir / "a_l2.png", at::full({12, 10}, 7, at::kLong));
  EXPECT_THAT(error_of(evaluate_into_out),
              HasSubstr("a_l2.png holds labels in [7, 7], expected class indices in [0, 3)"));
  fs::remove(dir / "a_l2.png");
  std::ofstream(dir / "a_l2.png") << "garbage";
  EXPECT_THAT(error_of(evaluate_into_out), HasSubstr("a_l2.png"));
  fs::remove(dir / "a_l2.png");
  io::write_label_image(dir / "b_s0.png", at::zeros({12, 10}, at::kLong));
  EXPECT_THAT(error_of(evaluate_into_out),
              HasSubstr("case b in " + dir.string() + " has samples but no annotations (b_l1.*)"));
  fs::remove(dir / "b_s0.png");
  io::write_label_image(dir / "a_s5.png", at::zeros({12, 10}, at::kLong));
  EXPECT_THAT(error_of(evaluate_into_out),
              HasSubstr("case a: sample files must be numbered from 0 without gaps; sample 2 is "
                        "missing (next found: a_s5.png)"));
  EXPECT_FALSE(fs::exists(out)) << "nothing may be written after an error";
}

class EvaluatePredictions : public EvaluateFolder {
 protected:
  // Writes one case: maps of a C = 2, 8 x 6 Gaussian of rank 2 and M annotations; returns the maps.
  struct Maps {
    at::Tensor mean, diag, factor, annotations;
  };
  Maps write_prediction(const std::string& id, double scale, int64_t annotations = 3) {
    Maps maps{at::randn({2, 8, 6}), at::full({2, 8, 6}, scale * scale),
              scale * at::randn({4, 8, 6}), at::randint(2, {annotations, 8, 6}, at::kLong)};
    const fs::path dir = root_ / "predictions";
    fs::create_directories(dir);
    io::write_float_image(dir / (id + "_logit_mean.nii.gz"), maps.mean);
    io::write_float_image(dir / (id + "_cov_diag.nii.gz"), maps.diag);
    io::write_float_image(dir / (id + "_cov_factor.nii.gz"), maps.factor);
    std::string annotation_list;
    for (int64_t j = 0; j < annotations; ++j) {
      const std::string name = id + "_l" + std::to_string(j + 1) + ".png";
      io::write_label_image(dir / name, maps.annotations[j]);
      annotation_list += (j ? ";" : "") + name;
    }
    csv_ << id << "," << id << "_logit_mean.nii.gz," << id << "_cov_diag.nii.gz," << id
         << "_cov_factor.nii.gz," << annotation_list << "\n";
    std::ofstream(dir / "prediction.csv") << "id,logit_mean,cov_diag,cov_factor,annotations\n"
                                          << csv_.str();
    return maps;
  }
  std::ostringstream csv_;
};

TEST_F(EvaluatePredictions, NearZeroCovarianceGivesTheMeanPredictionEverywhere) {
  const Maps maps = write_prediction("c1", /*scale=*/1e-6);
  EvaluationOptions options;
  SamplingOptions sampling;
  sampling.num_samples = 10;
  const auto results = evaluate_prediction_folder(root_ / "predictions", options, sampling);
  ASSERT_EQ(results.size(), 1u);
  std::map<std::string, double> row(results[0].metrics.begin(), results[0].metrics.end());
  EXPECT_EQ(row["diversity"], 0.0);
  EXPECT_DOUBLE_EQ(row["dice_1"], row["dice_mean_1"]);
  // Every sample is the mean, so log p(y) = sum_s log softmax(mean)_s[y_s] for each annotation.
  const at::Tensor log_p = maps.mean.log_softmax(0).reshape({2, -1});
  double expected = 0;
  for (int64_t j = 0; j < 3; ++j) {
    expected += log_p.gather(0, maps.annotations[j].reshape({1, -1})).sum().item<double>() / 3;
  }
  EXPECT_NEAR(row["loglikelihood"], expected, 1e-3);
  std::vector<std::string> names;
  for (const auto& [name, value] : results[0].metrics) names.push_back(name);
  EXPECT_EQ(names,
            std::vector<std::string>({"ged", "diversity", "annotator_diversity", "ged_oracle",
                                      "whole_image_samples", "hm_iou", "dice_1", "dice_mean_1",
                                      "ncc", "ece", "loglikelihood"}));
}

TEST_F(EvaluatePredictions, SameSeedSameMetricsAndSamplesSpread) {
  write_prediction("a", /*scale=*/2.0);
  write_prediction("b", /*scale=*/2.0);
  EvaluationOptions options;
  SamplingOptions sampling;
  sampling.num_samples = 12;
  const auto first = evaluate_prediction_folder(root_ / "predictions", options, sampling);
  const auto second = evaluate_prediction_folder(root_ / "predictions", options, sampling);
  ASSERT_EQ(first.size(), 2u);
  for (size_t i = 0; i < first.size(); ++i) {
    for (size_t k = 0; k < first[i].metrics.size(); ++k) {
      const double a = first[i].metrics[k].second, b = second[i].metrics[k].second;
      EXPECT_TRUE((std::isnan(a) && std::isnan(b)) || a == b) << first[i].metrics[k].first;
    }
  }
  EXPECT_GT(first[0].metrics[1].second, 0.05);  // diversity of a wide distribution
}

TEST_F(EvaluatePredictions, BadFoldersAreErrorsThatNameTheProblem) {
  EvaluationOptions options;
  SamplingOptions sampling;
  const fs::path dir = root_ / "predictions";
  fs::create_directories(dir);
  EXPECT_THAT(error_of([&] { evaluate_prediction_folder(dir, options, sampling); }),
              HasSubstr("has no prediction.csv"));
  std::ofstream(dir / "prediction.csv") << "id,logit_mean,cov_diag,annotations\nx,a,b,c\n";
  EXPECT_THAT(error_of([&] { evaluate_prediction_folder(dir, options, sampling); }),
              HasSubstr("the header has no column 'cov_factor'"));
  write_prediction("c", 1.0);
  io::write_float_image(dir / "c_cov_diag.nii.gz", at::ones({2, 8, 5}));
  EXPECT_THAT(
      error_of([&] { evaluate_prediction_folder(dir, options, sampling); }),
      HasSubstr("c_cov_diag.nii.gz has shape [2, 8, 5], but c_logit_mean.nii.gz has [2, 8, 6]"));
  io::write_float_image(dir / "c_cov_diag.nii.gz", at::ones({2, 8, 6}));
  options.num_classes = 3;
  EXPECT_THAT(error_of([&] { evaluate_prediction_folder(dir, options, sampling); }),
              HasSubstr("the mean logits have 2 channels, but --num-classes is 3"));
}

// Volumes: annotations on another voxel grid than the maps (or the samples) are refused, naming
// the file and both geometries, in a predictions folder and in a samples folder.
TEST_F(EvaluatePredictions, AnnotationsOfAnotherGeometryAreRefused) {
  const fs::path dir = root_ / "predictions3d";
  fs::create_directories(dir);
  io::Geometry geometry;
  geometry.spacing = {1.0, 1.0, 2.0};
  geometry.origin = {0.0, 0.0, 0.0};
  geometry.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  io::write_float_image(dir / "v_logit_mean.nii.gz", at::randn({2, 4, 5, 6}), geometry);
  io::write_float_image(dir / "v_cov_diag.nii.gz", at::full({2, 4, 5, 6}, 0.5), geometry);
  io::write_float_image(dir / "v_cov_factor.nii.gz", at::randn({2, 4, 5, 6}), geometry);
  io::Geometry shifted = geometry;
  shifted.origin = {0.0, 3.0, 0.0};
  io::write_label_image(dir / "v_l1.nii.gz", at::randint(2, {4, 5, 6}, at::kLong), shifted);
  io::write_text_file(dir / "prediction.csv",
                      "id,logit_mean,cov_diag,cov_factor,annotations\nv,v_logit_mean.nii.gz,"
                      "v_cov_diag.nii.gz,v_cov_factor.nii.gz,v_l1.nii.gz\n");
  EXPECT_THAT(error_of([&] {
                evaluate_prediction_folder(dir, {}, SamplingOptions{4, 0, {}});
              }),
              HasSubstr("v_l1.nii.gz (case v) has another geometry than v_logit_mean.nii.gz"));
  const fs::path samples = root_ / "samples3d";
  fs::create_directories(samples);
  io::write_label_image(samples / "v_s0.nii.gz", at::randint(2, {4, 5, 6}, at::kLong), geometry);
  io::write_label_image(samples / "v_l1.nii.gz", at::randint(2, {4, 5, 6}, at::kLong), shifted);
  EXPECT_THAT(error_of([&] { evaluate_sample_folder(samples, {}); }),
              HasSubstr("v_l1.nii.gz (case v) has another geometry than v_s0.nii.gz"));
}

TEST(FindSampleCases, EmptyFolderIsAnError) {
  const fs::path dir = fs::temp_directory_path() / ("ssn_empty_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_THAT(error_of([&] { find_sample_cases(dir); }), HasSubstr("has no files named"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ssn::evaluation

namespace ssn::evaluation {
namespace {

// ged_oracle: N draws from the case's own annotations. Identical annotations give 0; two
// different ones give 2 d (p - 1/2)^2 (p: the share of draws of the first), as the plain-mean
// D^2_GED of such a sample works out.
TEST(GedOracle, IsTheGedOfDrawsFromTheAnnotations) {
  EvaluationOptions options;
  const at::Tensor a = at::zeros({1, 8, 8}, at::kByte);
  at::Tensor b = a.clone();
  b.slice(1, 0, 4).fill_(1);  // half the image: d(a, b) = 1 - IoU(fg) = 1
  const at::Tensor samples = at::cat({a, b, a, b});
  const auto row_of = [&](const at::Tensor& annotations) {
    const MetricRow row = overlap_metrics(samples, annotations, options);
    return std::map<std::string, double>(row.begin(), row.end());
  };
  EXPECT_EQ(row_of(at::cat({b, b, b}))["ged_oracle"], 0.0);
  // b covers half the image: no case for whole_image_samples; with small annotations, the two
  // samples b of four are not whole-image ones (half is not most), and full ones are.
  EXPECT_TRUE(std::isnan(row_of(at::cat({b, b}))["whole_image_samples"]));
  at::Tensor small = a.clone();
  small[0][0][0] = 1;
  EXPECT_EQ(row_of(at::cat({small, a}))["whole_image_samples"], 0.0);
  const at::Tensor full = at::ones_like(a);
  const MetricRow wild = overlap_metrics(at::cat({full, a, a, full}), at::cat({small, a}), options);
  const std::map<std::string, double> wild_row(wild.begin(), wild.end());
  EXPECT_EQ(wild_row.at("whole_image_samples"), 0.5);
  const double oracle = row_of(at::cat({a, b}))["ged_oracle"];
  bool matches = false;  // p is k / 4 for some k
  for (int k = 0; k <= 4; ++k) {
    matches |= std::abs(oracle - 2.0 * (k / 4.0 - 0.5) * (k / 4.0 - 0.5)) < 1e-12;
  }
  EXPECT_TRUE(matches) << oracle;
}

}  // namespace
}  // namespace ssn::evaluation
