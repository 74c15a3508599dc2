#include "ssn/data/preprocess.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "ssn/data/volumes.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::data {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

// The statistics written out with plain loops: NumPy's linear percentile, strict bounds, the
// whole-volume mean cut, population deviation.
std::pair<double, double> expected_statistics(const std::vector<float>& values,
                                              const std::vector<bool>& brain) {
  std::vector<double> inside;
  double total = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    total += values[i];
    if (brain[i]) inside.push_back(values[i]);
  }
  const double volume_mean = total / static_cast<double>(values.size());
  std::sort(inside.begin(), inside.end());
  const auto percentile = [&](double p) {
    const double x = p / 100.0 * static_cast<double>(inside.size() - 1);
    const size_t low = static_cast<size_t>(x);
    const size_t high = std::min(low + 1, inside.size() - 1);
    return inside[low] + (inside[high] - inside[low]) * (x - static_cast<double>(low));
  };
  const double low = percentile(5), high = percentile(95);
  double sum = 0, squares = 0;
  int count = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (brain[i] && values[i] > low && values[i] < high && values[i] > volume_mean) {
      sum += values[i];
      ++count;
    }
  }
  const double mean = sum / count;
  for (size_t i = 0; i < values.size(); ++i) {
    if (brain[i] && values[i] > low && values[i] < high && values[i] > volume_mean) {
      squares += (values[i] - mean) * (values[i] - mean);
    }
  }
  return {mean, std::sqrt(squares / count)};
}

TEST(ZScore, MatchesTheReferenceStatistics) {
  const at::Tensor channel = (at::rand({6, 7, 8}) * 1000).round();
  const at::Tensor brain = at::rand({6, 7, 8}) > 0.3;
  const at::Tensor z = z_score_normalise(channel, brain);
  std::vector<float> values(channel.data_ptr<float>(), channel.data_ptr<float>() + channel.numel());
  const at::Tensor flat_brain = brain.reshape({-1});
  std::vector<bool> inside;
  for (int64_t i = 0; i < flat_brain.numel(); ++i) inside.push_back(flat_brain[i].item<bool>());
  const auto [mean, deviation] = expected_statistics(values, inside);
  EXPECT_LT(
      (z.to(at::kDouble) - (channel.to(at::kDouble) - mean) / deviation).abs().max().item<double>(),
      1e-5);
  EXPECT_THAT(error_of([&] {
                z_score_normalise(channel, at::zeros({6, 7, 8}, at::kBool));
              }),
              HasSubstr("the brain mask is empty"));
}

TEST(PreprocessBrats, WritesTheIndexAndFixesLabelsKeepingGeometry) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root =
      fs::temp_directory_path() / ("ssn_preprocess_" + std::to_string(::getpid()));
  fs::remove_all(root);
  io::Geometry geometry;
  geometry.spacing = {1.0, 1.0, 1.0};
  geometry.origin = {-3.0, 5.0, 7.0};
  geometry.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  for (const char* grade : {"HGG", "LGG"}) {
    for (int c = 0; c < 3; ++c) {
      const std::string name = std::string("Brats17_") + grade + "_" + std::to_string(c) + "_1";
      const fs::path folder = root / "in" / grade / name;
      fs::create_directories(folder);
      at::Tensor t1 = at::randint(1, 500, {10, 12, 11}, at::kShort);
      t1.slice(0, 0, 2).zero_();  // outside the brain
      io::write_float_image(folder / (name + "_t1.nii.gz"), t1.to(at::kFloat), geometry);
      for (const char* channel : {"flair", "t1ce", "t2"}) {
        io::write_float_image(folder / (name + "_" + channel + ".nii.gz"),
                              at::randint(0, 800, {10, 12, 11}).to(at::kFloat), geometry);
      }
      at::Tensor seg = at::zeros({10, 12, 11}, at::kLong);
      seg.slice(0, 4, 6).fill_(4);
      seg.slice(0, 6, 7).fill_(2);
      io::write_label_image(folder / (name + "_seg.nii.gz"), seg, geometry);
    }
  }
  PreprocessOptions options;
  options.fractions = {0.5, 1.0 / 6, 1.0 / 3};
  const PreprocessCounts counts = preprocess_brats(root / "in", root / "out", options);
  EXPECT_EQ(counts.train, 3);
  EXPECT_EQ(counts.valid, 1);
  EXPECT_EQ(counts.test, 2);
  const auto cases = read_case_csv(root / "out" / "data_index_train.csv",
                                   {{"flair", "t1", "t1ce", "t2"}, "seg", "sampling_mask"});
  ASSERT_EQ(cases.size(), 3u);
  const Volume volume = load_volume(cases[0], 4);
  EXPECT_EQ(volume.target.max().item<int64_t>(), 3);  // 4 -> 3
  EXPECT_FALSE(volume.mask.slice(0, 0, 2).any().item<bool>());
  EXPECT_TRUE(volume.mask.slice(0, 2).all().item<bool>());
  EXPECT_TRUE(volume.geometry.matches(geometry));
  EXPECT_THAT(error_of([&] { preprocess_brats(root / "in", root / "out", options); }),
              HasSubstr("already exists and is not an empty folder"));
  fs::remove_all(root);
}

// --split paper: the reference's three lists exactly, in their order, from a folder in the BraTS
// 2017 layout (tiny volumes); cases in no list are left out; missing ids are listed in one error.
TEST(PreprocessBrats, PaperSplitGivesTheReferencesListsAndNamesEveryMissingId) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root =
      fs::temp_directory_path() / ("ssn_paper_split_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const auto write_case = [&](const std::string& id) {  // id: <grade>/<case>/<case>
    fs::create_directories((root / "in" / id).parent_path());
    at::Tensor t1 = at::randint(1, 500, {3, 4, 4}, at::kShort).to(at::kFloat);
    for (const char* channel : {"flair", "t1", "t1ce", "t2"}) {
      io::write_float_image(root / "in" / (id + "_" + channel + ".nii.gz"),
                            channel == std::string("t1") ? t1 : at::rand({3, 4, 4}) * 100);
    }
    io::write_label_image(root / "in" / (id + "_seg.nii.gz"), at::zeros({3, 4, 4}, at::kLong));
  };
  // The lists as extracted from the reference by a separate script (tests/data/reference).
  std::ifstream file(std::string(SSN_SOURCE_DIR) +
                     "/tests/data/reference/brats2017_paper_split.json");
  const nlohmann::json expected = nlohmann::json::parse(file);
  const char* parts[3] = {"train", "valid", "test"};
  for (const char* part : parts) {
    for (const auto& id : expected[part]) write_case(id.get<std::string>());
  }
  write_case("LGG/Brats18_extra_1/Brats18_extra_1");
  PreprocessOptions options;
  options.paper_split = true;
  const PreprocessCounts counts = preprocess_brats(root / "in", root / "out", options);
  EXPECT_EQ(counts.train, 171);
  EXPECT_EQ(counts.valid, 28);
  EXPECT_EQ(counts.test, 86);
  EXPECT_EQ(counts.left_out, 1);
  for (const char* part : parts) {
    const auto cases = read_case_csv(root / "out" / ("data_index_" + std::string(part) + ".csv"),
                                     {{"flair", "t1", "t1ce", "t2"}, "seg", "sampling_mask"});
    std::vector<std::string> ids;
    for (const auto& c : cases) ids.push_back(c.id);
    EXPECT_EQ(ids, expected[part].get<std::vector<std::string>>()) << part;
  }
  fs::remove_all(root / "out");
  fs::remove_all(root / "in" / "HGG" / "Brats17_2013_11_1");
  fs::remove_all(root / "in" / "LGG" / "Brats17_TCIA_620_1");
  const std::string error = error_of([&] { preprocess_brats(root / "in", root / "out", options); });
  EXPECT_THAT(error, HasSubstr("2 of the paper's 285 BraTS 2017 cases are not in"));
  EXPECT_THAT(error, HasSubstr("HGG/Brats17_2013_11_1/Brats17_2013_11_1"));
  EXPECT_THAT(error, HasSubstr("LGG/Brats17_TCIA_620_1/Brats17_TCIA_620_1"));
  EXPECT_FALSE(fs::exists(root / "out"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace ssn::data
