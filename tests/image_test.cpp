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
