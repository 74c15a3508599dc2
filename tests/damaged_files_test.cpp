// A corpus of damaged image files, made here from files ssn wrote: every one must be an error that
// names the file, never pixels read as zeros (ITK's readers fill what is missing silently).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "golden.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::io {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

class DamagedFiles : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!image_io_available()) GTEST_SKIP() << "built without ITK";
    dir_ = fs::temp_directory_path() / ("ssn_damaged_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // Random values: compressed data is about as long as the raw data, so a cut hits pixels.
    if (GetParam() == ".png") {
      write_label_image(dir_ / ("whole" + GetParam()), at::randint(256, {40, 50}, at::kLong));
    } else {
      write_float_image(dir_ / ("whole" + GetParam()), at::randn({6, 20, 30}));
    }
    whole_ = read_bytes(dir_ / ("whole" + GetParam()));
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path damaged(const std::string& name, const std::string& bytes) {
    const fs::path path = dir_ / (name + GetParam());
    write_bytes(path, bytes);
    return path;
  }
  fs::path dir_;
  std::string whole_;
};

TEST_P(DamagedFiles, TheIntactFileReads) {
  EXPECT_NO_THROW(read_image(dir_ / ("whole" + GetParam())));
}

TEST_P(DamagedFiles, ATruncatedFileIsAnErrorNamingIt) {
  for (const double fraction : {0.5, 0.9, 0.99}) {
    const auto size = static_cast<size_t>(static_cast<double>(whole_.size()) * fraction);
    const fs::path path = damaged("cut" + std::to_string(size), whole_.substr(0, size));
    EXPECT_THAT(error_of([&] { read_image(path); }), HasSubstr(path.string()))
        << "cut to " << size << " of " << whole_.size() << " bytes";
  }
  // One byte short.
  const fs::path path = damaged("cut_one", whole_.substr(0, whole_.size() - 1));
  EXPECT_THAT(error_of([&] { read_image(path); }), HasSubstr(path.string()));
}

TEST_P(DamagedFiles, RandomBytesAreAnErrorNamingTheFile) {
  std::mt19937 random(7);
  std::string bytes(whole_.size(), '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  const fs::path path = damaged("random", bytes);
  EXPECT_THAT(error_of([&] { read_image(path); }), HasSubstr(path.string()));
}

// A flipped bit in compressed data fails its checksum (gzip CRC, zlib Adler-32 or PNG CRC).
TEST_P(DamagedFiles, AFlippedBitInCompressedDataIsAnError) {
  if (GetParam() == ".nii") {
    GTEST_SKIP() << ".nii is uncompressed: a flipped bit is another valid value";
  }
  std::string bytes = whole_;
  bytes[bytes.size() * 2 / 3] ^= 0x10;
  const fs::path path = damaged("flipped", bytes);
  EXPECT_THAT(error_of([&] { read_image(path); }), HasSubstr(path.string()));
}

INSTANTIATE_TEST_SUITE_P(Formats, DamagedFiles,
                         ::testing::Values(".nii.gz", ".nii", ".mha", ".nrrd", ".png"),
                         [](const auto& info) {
                           std::string name = info.param.substr(1);
                           for (char& c : name) c = c == '.' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace ssn::io
