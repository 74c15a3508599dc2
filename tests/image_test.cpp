#include "ssn/io/image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ssn/io/png.h"

namespace ssn::io {
namespace {

namespace fs = std::filesystem;

class LabelImage : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!image_io_available()) GTEST_SKIP() << "built without ITK";
    dir_ = fs::temp_directory_path() / ("ssn_label_image_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(LabelImage, PngRoundTripKeepsValuesAndOrientation) {
  const at::Tensor labels = at::randint(256, {5, 7}, at::kLong);  // H = 5, W = 7
  write_label_image(dir_ / "a.png", labels);
  const at::Tensor back = read_label_image(dir_ / "a.png");
  EXPECT_EQ(back.sizes(), labels.sizes());
  EXPECT_TRUE(back.equal(labels));
}

TEST_F(LabelImage, NiftiRoundTripOfAVolume) {
  const at::Tensor labels = at::randint(4, {3, 4, 6}, at::kLong);
  write_label_image(dir_ / "v.nii.gz", labels);
  EXPECT_TRUE(read_label_image(dir_ / "v.nii.gz").equal(labels));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1)
      << "no temporary file left behind";
}

TEST_F(LabelImage, UnreadableFilesAreErrorsThatNameThem) {
  std::ofstream(dir_ / "broken.png") << "not a png";
  try {
    read_label_image(dir_ / "broken.png");
    FAIL() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(), ::testing::HasSubstr("broken.png"));
  }
  try {
    read_label_image(dir_ / "missing.png");
    FAIL() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(), ::testing::HasSubstr("missing.png: no such file"));
  }
}

}  // namespace
}  // namespace ssn::io

namespace ssn::io {
namespace {

class Geometry3d : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!image_io_available()) GTEST_SKIP() << "built without ITK";
    dir_ = std::filesystem::temp_directory_path() / ("ssn_geometry_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    geometry_.spacing = {0.8, 1.25, 2.5};
    geometry_.origin = {-12.5, 30.0, 7.75};
    // A rotation about z by 90 degrees with x flipped: not the identity, still orthonormal.
    geometry_.direction = {0, -1, 0, -1, 0, 0, 0, 0, 1};
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  Geometry geometry_;
};

TEST_F(Geometry3d, NiftiRoundTripKeepsSpacingOriginAndDirection) {
  const at::Tensor values = at::randn({3, 4, 5});
  write_float_image(dir_ / "v.nii.gz", values, geometry_);
  const Image back = read_image_with_geometry(dir_ / "v.nii.gz");
  EXPECT_TRUE(back.pixels.equal(values));
  EXPECT_TRUE(back.geometry.matches(geometry_)) << back.geometry.describe();
  write_label_image(dir_ / "l.nrrd", at::randint(4, {3, 4, 5}, at::kLong), geometry_);
  EXPECT_TRUE(read_image_with_geometry(dir_ / "l.nrrd").geometry.matches(geometry_));
  write_label_image(dir_ / "l.mha", at::randint(4, {3, 4, 5}, at::kLong), geometry_);
  EXPECT_TRUE(read_image_with_geometry(dir_ / "l.mha").geometry.matches(geometry_));
}

TEST_F(Geometry3d, MapsWithAChannelAxisExtendTheCaseGeometry) {
  write_float_image(dir_ / "maps.nii.gz", at::randn({2, 3, 4, 5}), geometry_);
  const Image back = read_image_with_geometry(dir_ / "maps.nii.gz");
  ASSERT_EQ(back.geometry.spacing.size(), 4u);
  EXPECT_DOUBLE_EQ(back.geometry.spacing[3], 1.0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(back.geometry.spacing[i], geometry_.spacing[i], 1e-6);
    EXPECT_NEAR(back.geometry.origin[i], geometry_.origin[i], 1e-6);
    for (int j = 0; j < 3; ++j) {
      EXPECT_NEAR(back.geometry.direction[i * 4 + j], geometry_.direction[i * 3 + j], 1e-6);
    }
  }
  EXPECT_FALSE(back.geometry.matches(geometry_));  // 4 axes against 3
}

}  // namespace
}  // namespace ssn::io
