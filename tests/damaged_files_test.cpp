// A corpus of damaged image files, made here from files ssn wrote: every one must be an error that
// names the file, never pixels read as zeros (ITK's readers fill what is missing silently).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include "golden.h"
#include "ssn/io/atomic_file.h"
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

// The formats ssn writes compressed (a flipped bit in .nii is another valid value), and those
// that hold floats.
class CompressedFiles : public DamagedFiles {};
class FloatFiles : public DamagedFiles {};

// A flipped bit in compressed data fails its checksum (gzip CRC, zlib Adler-32 or PNG CRC).
TEST_P(CompressedFiles, AFlippedBitInCompressedDataIsAnError) {
  std::string bytes = whole_;
  bytes[bytes.size() * 2 / 3] ^= 0x10;
  const fs::path path = damaged("flipped", bytes);
  EXPECT_THAT(error_of([&] { read_image(path); }), HasSubstr(path.string()));
}

// A float32 image [2, 5, 6] with `bad` at one voxel, made by hand (ssn's writers refuse to write
// NaN): NIfTI patched after writing a sentinel, then gzipped by zlib; MetaImage and NRRD with a
// header written here and raw data.
fs::path hand_made_with(const fs::path& dir, const std::string& ext, float bad) {
  at::Tensor values = at::randn({2, 5, 6});
  constexpr float kSentinel = 12345.5f;
  values[1][2][3] = kSentinel;
  const fs::path path = dir / ("nonfinite" + ext);
  if (ext == ".mha" || ext == ".nrrd") {
    const std::string header =
        ext == ".mha" ? "ObjectType = Image\nNDims = 3\nDimSize = 6 5 2\nElementType = MET_FLOAT\n"
                        "ElementByteOrderMSB = False\nElementDataFile = LOCAL\n"
                      : "NRRD0004\ntype: float\ndimension: 3\nsizes: 6 5 2\nencoding: raw\n"
                        "endian: little\n\n";
    values[1][2][3] = bad;
    const at::Tensor data = values.contiguous();
    write_bytes(path, header + std::string(reinterpret_cast<const char*>(data.data_ptr<float>()),
                                           static_cast<size_t>(data.numel()) * 4));
    return path;
  }
  write_float_image(dir / "finite.nii", values);
  std::string bytes = read_bytes(dir / "finite.nii");
  const std::string sentinel(reinterpret_cast<const char*>(&kSentinel), 4);
  const size_t at = bytes.find(sentinel, 348);
  EXPECT_NE(at, std::string::npos);
  bytes.replace(at, 4, std::string(reinterpret_cast<const char*>(&bad), 4));
  if (ext == ".nii") {
    write_bytes(path, bytes);
  } else {
    gzFile file = gzopen(path.c_str(), "wb");
    gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(file);
  }
  return path;
}

// NaN and infinities: ITK's NIfTI reader would return NaN as 0, so a NIfTI file with them is
// refused; the MetaImage and NRRD readers keep them, and their callers refuse them (the
// predictions folder and volume readers check every map).
TEST_P(FloatFiles, NonFiniteValuesAreRefusedOrKept) {
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    const fs::path path = hand_made_with(dir_, GetParam(), bad);
    if (GetParam() == ".nii" || GetParam() == ".nii.gz") {
      EXPECT_THAT(error_of([&] { read_image(path); }),
                  HasSubstr(path.string() + ": it holds NaN or infinite values"))
          << bad;
    } else {
      EXPECT_FALSE(at::isfinite(read_image(path)).all().item<bool>()) << bad;
    }
  }
  // ssn never writes them.
  at::Tensor values = at::randn({2, 5, 6});
  values[0][0][0] = std::nanf("");
  EXPECT_THAT(error_of([&] { write_float_image(dir_ / ("out" + GetParam()), values); }),
              HasSubstr("the values hold NaN or infinite values"));
  EXPECT_FALSE(fs::exists(dir_ / ("out" + GetParam())));
}

std::string format_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(1);
  for (char& c : name) c = c == '.' ? '_' : c;
  return name;
}

INSTANTIATE_TEST_SUITE_P(Formats, DamagedFiles,
                         ::testing::Values(".nii.gz", ".nii", ".mha", ".nrrd", ".png"),
                         format_name);
INSTANTIATE_TEST_SUITE_P(Formats, CompressedFiles,
                         ::testing::Values(".nii.gz", ".mha", ".nrrd", ".png"), format_name);
INSTANTIATE_TEST_SUITE_P(Formats, FloatFiles, ::testing::Values(".nii.gz", ".nii", ".mha", ".nrrd"),
                         format_name);

// A process stopped by SIGTERM or SIGINT while it writes a file leaves neither the file nor its
// temporary: the handler removes the temporary and the process still ends by that signal.
TEST(AtomicWrite, ASignalDuringAWriteRemovesTheTemporaryAndEndsTheProcess) {
  const fs::path folder =
      fs::temp_directory_path() / ("ssn_signal_write_" + std::to_string(::getpid()));
  fs::remove_all(folder);
  fs::create_directories(folder);
  for (const int signal : {SIGTERM, SIGINT}) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      write_atomically(folder / "result.bin", [&](const fs::path& temporary) {
        std::ofstream(temporary) << "half of it";
        ::raise(signal);
      });
      ::_exit(0);  // not reached: the signal ends the process
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == signal) << "status " << status;
    EXPECT_TRUE(fs::is_empty(folder))
        << "signal " << signal << " left " << fs::directory_iterator(folder)->path();
    fs::remove_all(folder);
    fs::create_directories(folder);
  }
  fs::remove_all(folder);
}

}  // namespace
}  // namespace ssn::io
