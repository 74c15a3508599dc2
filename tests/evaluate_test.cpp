#include "ssn/evaluation/evaluate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::evaluation {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const c10::Error& error) {
    return error.what_without_backtrace();
  }
  return "<no error>";
}

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
    EXPECT_DOUBLE_EQ(results[0].metrics[k].second, expected1[k].second) << expected1[k].first;
    EXPECT_DOUBLE_EQ(results[1].metrics[k].second, expected2[k].second) << expected2[k].first;
  }

  const auto summary = write_evaluation(root_ / "out", results);
  std::ifstream csv(root_ / "out" / "metrics.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "id,ged,diversity,annotator_diversity,hm_iou,dice_1,ncc,ece");
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

TEST_F(EvaluateFolder, BadInputIsAnErrorThatNamesTheFileAndWritesNothing) {
  EvaluationOptions options;
  options.num_classes = 3;
  const fs::path dir = root_ / "samples";
  const fs::path out = root_ / "out";
  auto evaluate_into_out = [&] { write_evaluation(out, evaluate_sample_folder(dir, options)); };

  write_case("a", 2, 1, 3);
  io::write_label_image(dir / "a_l2.png", at::zeros({12, 11}, at::kLong));
  EXPECT_THAT(error_of(evaluate_into_out), HasSubstr("a_l2.png has shape [12, 11], but a_s0.png has [12, 10]"));
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

TEST(FindSampleCases, EmptyFolderIsAnError) {
  const fs::path dir = fs::temp_directory_path() / ("ssn_empty_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_THAT(error_of([&] { find_sample_cases(dir); }), HasSubstr("has no files named"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ssn::evaluation
