#include "ssn/predictions/predictions_folder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "golden.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/png.h"

namespace ssn::predictions {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

class PredictionsFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
    root_ = fs::temp_directory_path() / ("ssn_predictions_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  CasePrediction make_case(const std::string& id) const {
    CasePrediction p;
    p.id = id;
    p.mean = at::randn({2, 6, 5});
    p.cov_diag = at::rand({2, 6, 5}) + 0.1;
    p.cov_factor = at::randn({4, 6, 5});
    p.image = at::randn({6, 5});
    p.annotations = at::randint(2, {3, 6, 5}, at::kLong);
    return p;
  }
  fs::path root_;
};

TEST_F(PredictionsFolder, WhatTheWriterWritesTheReadersReadBack) {
  CasePrediction p = make_case("P1/s0");
  write_predictions_folder(root_ / "out", "output folder",
                           [&](PredictionsWriter& writer) { writer.write_case(p); });
  const auto cases = read_prediction_csv(root_ / "out");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].id, "P1_s0");
  const PredictionMaps maps = read_prediction_maps(cases[0]);
  EXPECT_TRUE(maps.mean.equal(p.mean));
  EXPECT_TRUE(maps.cov_diag.equal(p.cov_diag));
  EXPECT_TRUE(maps.cov_factor.equal(p.cov_factor));
  EXPECT_TRUE(read_annotations(cases[0], 2, {6, 5}).to(at::kLong).equal(p.annotations));
}

TEST_F(PredictionsFolder, ADeterministicModelIsWrittenWithTheNamedVarianceAndNoFactor) {
  CasePrediction p = make_case("c");
  p.cov_diag = at::Tensor();
  p.cov_factor = at::Tensor();
  write_predictions_folder(root_ / "out", "output folder",
                           [&](PredictionsWriter& writer) { writer.write_case(p); });
  const PredictionMaps maps = read_prediction_maps(read_prediction_csv(root_ / "out")[0]);
  EXPECT_TRUE(maps.cov_diag.eq(static_cast<float>(kDeterministicVariance)).all().item<bool>());
  EXPECT_EQ(maps.cov_factor.sizes(), maps.mean.sizes());
  EXPECT_EQ(maps.cov_factor.abs().max().item<float>(), 0.0f);
}

// "sub/dir" and "sub_dir" both become the file stem "sub_dir": the second would overwrite the
// first's maps, so it is an error and no folder appears.
TEST_F(PredictionsFolder, IdsThatCollideAfterSanitisingAreAnError) {
  EXPECT_THAT(error_of([&] {
                write_predictions_folder(root_ / "out", "output folder",
                                         [&](PredictionsWriter& writer) {
                                           writer.write_case(make_case("sub/dir"));
                                           writer.write_case(make_case("sub_dir"));
                                         });
              }),
              HasSubstr("case ids 'sub_dir' and an earlier one both give the file stem 'sub_dir'"));
  EXPECT_FALSE(fs::exists(root_ / "out"));
}

// A float32 MetaImage written by hand (ssn's writers refuse NaN and infinities; this reader keeps
// them).
void write_raw_mha(const fs::path& path, const at::Tensor& values) {
  const at::Tensor data = values.to(at::kFloat).contiguous();
  std::string sizes;
  for (int64_t d = data.dim() - 1; d >= 0; --d) sizes += " " + std::to_string(data.size(d));
  io::write_text_file(path, "ObjectType = Image\nNDims = " + std::to_string(data.dim()) +
                                "\nDimSize =" + sizes +
                                "\nElementType = MET_FLOAT\nElementByteOrderMSB = False\n"
                                "ElementDataFile = LOCAL\n" +
                                std::string(reinterpret_cast<const char*>(data.data_ptr<float>()),
                                            static_cast<size_t>(data.numel()) * 4));
}

// Maps with NaN, infinities or a variance <= 0 are refused, naming the file and the case.
TEST_F(PredictionsFolder, NonFiniteMapsAndVariancesAtMostZeroAreRefused) {
  const CasePrediction p = make_case("c");
  write_predictions_folder(root_ / "out", "output folder",
                           [&](PredictionsWriter& writer) { writer.write_case(p); });
  const PredictionCase c = read_prediction_csv(root_ / "out")[0];
  PredictionCase bad = c;
  at::Tensor factor = p.cov_factor.clone();
  factor[1][2][3] = std::numeric_limits<float>::infinity();
  bad.cov_factor = root_ / "factor.mha";
  write_raw_mha(bad.cov_factor, factor);
  EXPECT_THAT(error_of([&] { read_prediction_maps(bad); }),
              HasSubstr("factor.mha (case c) holds NaN or infinite values"));
  bad = c;
  at::Tensor mean = p.mean.clone();
  mean[1][1][1] = std::nanf("");
  bad.logit_mean = root_ / "mean.mha";
  write_raw_mha(bad.logit_mean, mean);
  EXPECT_THAT(error_of([&] { read_prediction_maps(bad); }),
              HasSubstr("mean.mha (case c) holds NaN or infinite values"));
  bad = c;
  at::Tensor diag = p.cov_diag.clone();
  diag[0][0][0] = -0.5;
  bad.cov_diag = root_ / "diag.mha";
  write_raw_mha(bad.cov_diag, diag);
  EXPECT_THAT(error_of([&] { read_prediction_maps(bad); }),
              HasSubstr("diag.mha (case c) holds a variance <= 0 (minimum -0.5)"));
  EXPECT_NO_THROW(read_prediction_maps(c));
}

}  // namespace
}  // namespace ssn::predictions
