// The pickle reader (io/pickle.h) and PyTorch files (io/torch_file.h): values, refusals, round
// trips and fuzzing. Python-made files in tests/data/pickles; bigger fixtures in cli/interop.sh.

#include "ssn/io/pickle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include "golden.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/torch_file.h"
#include "ssn/io/zip.h"

namespace ssn::io {
namespace {

namespace fs = std::filesystem;
using pickle::Kind;
using pickle::Value;
using ssn::testing::error_of;
using ::testing::HasSubstr;
using namespace std::string_literals;

fs::path pickles_dir() { return fs::path(SSN_SOURCE_DIR) / "tests/data/pickles"; }

pickle::Permissions numpy_only() {
  pickle::Permissions p;
  p.numpy = true;
  return p;
}

Value read_string(const std::string& bytes, const pickle::Permissions& permissions = {}) {
  return pickle::read(bytes.data(), bytes.size(), "test.pickle", permissions);
}

fs::path temporary(const std::string& name) {
  return fs::temp_directory_path() / ("ssn_pickle_test_" + std::to_string(::getpid()) + name);
}

class TinyPickle : public ::testing::TestWithParam<int> {};

TEST_P(TinyPickle, ReadsEveryValueOfEveryProtocol) {
  const std::string bytes =
      read_text_file(pickles_dir() / ("tiny_p" + std::to_string(GetParam()) + ".pickle"));
  const Value root = read_string(bytes, numpy_only());
  const Value* slice = root.find("s0");
  ASSERT_NE(slice, nullptr);
  const Value* image = slice->find("image");
  ASSERT_TRUE(image != nullptr && image->is(Kind::kArray));
  EXPECT_EQ(image->array->dtype, "<f4");
  EXPECT_EQ(image->array->shape, (std::vector<int64_t>{3, 4}));
  const auto* floats = reinterpret_cast<const float*>(image->array->data.data);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(floats[i], static_cast<float>(i) / 11.0f);
  const Value* masks = slice->find("masks");
  ASSERT_TRUE(masks != nullptr && masks->is(Kind::kList));
  ASSERT_EQ(masks->items->size(), 2u);
  const pickle::Array& eye = *(*masks->items)[0].array;
  EXPECT_EQ(eye.dtype, "|u1");
  EXPECT_FALSE(eye.fortran_order);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) EXPECT_EQ(eye.data.data[r * 4 + c], r == c ? 1 : 0);
  }
  EXPECT_TRUE((*masks->items)[1].array->fortran_order);
  EXPECT_EQ(slice->find("series_uid")->text, "u1");
  EXPECT_DOUBLE_EQ(slice->find("pixel_spacing")->real, 0.5);
  EXPECT_EQ(slice->find("n")->integer, -70000);
  EXPECT_EQ(slice->find("big")->integer, int64_t{1} << 40);
  const pickle::Items& flags = *slice->find("flags")->items;
  ASSERT_EQ(flags.size(), 4u);
  EXPECT_TRUE(flags[0].boolean);
  EXPECT_TRUE(flags[1].is(Kind::kNone));
  EXPECT_DOUBLE_EQ(flags[2].real, 1.5);
  ASSERT_TRUE(flags[3].is(Kind::kBytes));
  EXPECT_EQ(std::string(flags[3].bytes.data, flags[3].bytes.size), "ab");
}

INSTANTIATE_TEST_SUITE_P(Protocols, TinyPickle, ::testing::Values(2, 3, 4, 5));

TEST(Pickle, RefusesEveryOtherGlobalByName) {
  // cos\nsystem\n + ('ls',) + REDUCE: what pickle.dump writes for a __reduce__ to os.system.
  const std::string evil =
      "\x80\x02"
      "cos\nsystem\nq\x00X\x02\x00\x00\x00"
      "lsq\x01\x85R."s;
  EXPECT_THAT(error_of([&] { read_string(evil, numpy_only()); }),
              HasSubstr("test.pickle: refuses to build os.system"));
  // NumPy's globals are not a checkpoint's, nor the other way round.
  const std::string ordered = std::string("\x80\x02") + "ccollections\nOrderedDict\n)R.";
  EXPECT_THAT(error_of([&] { read_string(ordered, numpy_only()); }),
              HasSubstr("refuses to build collections.OrderedDict"));
  pickle::Permissions torch;
  torch.torch = true;
  EXPECT_TRUE(read_string(ordered, torch).is(Kind::kDict));
  const std::string reconstruct =
      std::string("\x80\x02") + "cnumpy.core.multiarray\n_reconstruct\n.";
  EXPECT_THAT(error_of([&] { read_string(reconstruct, torch); }),
              HasSubstr("refuses to build numpy.core.multiarray._reconstruct"));
}

TEST(Pickle, DamagedInputIsAnErrorWithItsOffset) {
  EXPECT_THAT(error_of([&] {
                read_string(
                    "\x80\x02}X\x05\x00\x00\x00"
                    "ab"s);
              }),
              HasSubstr("truncated"));
  EXPECT_THAT(error_of([&] { read_string(std::string("\x80\x02}")); }),
              HasSubstr("ends before its STOP opcode"));
  EXPECT_THAT(error_of([&] { read_string(std::string("\x80\x02s.")); }), HasSubstr("empty stack"));
  EXPECT_THAT(error_of([&] { read_string(std::string("\x80\x02h\x07.")); }),
              HasSubstr("memo entry 7"));
  EXPECT_THAT(error_of([&] { read_string(std::string("\x80\x02\xff.")); }),
              HasSubstr("pickle opcode 0xff is not one ssn reads"));
  EXPECT_THAT(error_of([&] { read_string(std::string("\x80\x09N.")); }),
              HasSubstr("pickle protocol 9"));
}

// Structures pickle.dump never writes, which would make freeing them recurse without bound or
// leak: refused.
TEST(Pickle, RefusesCyclesAndUnboundedNesting) {
  // ]q0 h0 a: a list appended to itself. ]q0 ]h0 a 0 h0 ]a: list 0 nested, then changed.
  EXPECT_THAT(error_of([&] {
                read_string(
                    "\x80\x02]q\x00"
                    "h\x00"
                    "a."s);
              }),
              HasSubstr("a structure that contains itself"));
  EXPECT_THAT(error_of([&] {
                read_string(
                    "\x80\x02]q\x00]h\x00"
                    "a0h\x00"
                    "]a."s);
              }),
              HasSubstr("a structure changed after it was nested in another"));
  const std::string deep = "\x80\x02" + std::string(200000, ']') + std::string(199999, 'a') + ".";
  EXPECT_THAT(error_of([&] { read_string(deep); }),
              HasSubstr("structures nested deeper than 1000"));
  const std::string fine = "\x80\x02" + std::string(900, ']') + std::string(899, 'a') + ".";
  EXPECT_TRUE(read_string(fine).is(Kind::kList));
}

// Random damage to real pickles and checkpoints: an error or a value, never a crash or a hang.
TEST(Pickle, FuzzedInputNeverCrashes) {
  std::vector<std::pair<std::string, pickle::Permissions>> seeds;
  for (int p = 2; p <= 5; ++p) {
    seeds.emplace_back(read_text_file(pickles_dir() / ("tiny_p" + std::to_string(p) + ".pickle")),
                       numpy_only());
  }
  const fs::path file = temporary("fuzz_seed.pt");
  write_torch_state_dict(file, {{"a", torch::randn({3, 2})}, {"b", torch::arange(5)}});
  {
    ZipReader zip(file);
    pickle::Permissions torch;
    torch.torch = true;
    seeds.emplace_back(zip.read(*zip.find(file.stem().string() + "/data.pkl")), torch);
  }
  std::mt19937 random(20261127);
  int errors = 0, values = 0;
  for (int round = 0; round < 20000; ++round) {
    const auto& [seed, permissions] = seeds[static_cast<size_t>(round) % seeds.size()];
    std::string bytes = seed;
    const int changes = 1 + static_cast<int>(random() % 4);
    for (int c = 0; c < changes; ++c) bytes[random() % bytes.size()] = static_cast<char>(random());
    if (random() % 4 == 0) bytes.resize(random() % bytes.size());
    try {
      pickle::read(bytes.data(), bytes.size(), "fuzz", permissions);
      ++values;
    } catch (const c10::Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 1000);
  std::printf("fuzzed pickles: %d errors, %d read as values\n", errors, values);
  // Whole files: the zip layer's checks first.
  const std::string whole = read_text_file(file);
  for (int round = 0; round < 300; ++round) {
    std::string bytes = whole;
    bytes[random() % bytes.size()] = static_cast<char>(random());
    write_text_file(file, bytes);
    try {
      read_torch_state_dict(file);
    } catch (const c10::Error&) {
    }
  }
  fs::remove(file);
}

TEST(TorchFile, WritesWhatItReadsBitForBit) {
  torch::manual_seed(3);
  const std::vector<NamedTensor> tensors = {
      {"float", torch::randn({2, 3, 4})},
      {"double", torch::randn({5}, torch::kDouble)},
      {"long", torch::randint(-1000, 1000, {3, 1}, torch::kLong)},
      {"bool", torch::rand({4}) > 0.5},
      {"half", torch::randn({2, 2}).to(torch::kHalf)},
      {"strided", torch::randn({4, 6}).t()},
      {"scalar", torch::tensor(7.5)},
      {"empty", torch::zeros({0, 3})}};
  const fs::path file = temporary("roundtrip.pt");
  write_torch_state_dict(file, tensors);
  check_zip_integrity(file);
  const std::vector<NamedTensor> back = read_torch_state_dict(file);
  fs::remove(file);
  ASSERT_EQ(back.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(back[i].name, tensors[i].name);
    EXPECT_EQ(back[i].tensor.scalar_type(), tensors[i].tensor.scalar_type()) << tensors[i].name;
    EXPECT_TRUE(back[i].tensor.equal(tensors[i].tensor)) << tensors[i].name;
  }
}

// A hand-made torch.save file: one float tensor "w" of `size_tuple` (pickled) over 4 floats.
std::string tensor_file(const std::string& size_tuple) {
  const std::string data_pkl =
      "\x80\x02"
      "ccollections\nOrderedDict\n)R("
      "X\x01\x00\x00\x00"
      "wctorch._utils\n_rebuild_tensor_v2\n(("
      "X\x07\x00\x00\x00"
      "storagectorch\nFloatStorage\n"
      "X\x01\x00\x00\x00"
      "0"
      "X\x03\x00\x00\x00"
      "cpuK\x04"
      "tQK\x00"s +
      size_tuple +
      "(K\x01"
      "t\x89"
      "ccollections\nOrderedDict\n)RtRu."s;
  const std::string storage(16, '\0');
  return zip_stored({{"x/data.pkl", data_pkl}, {"x/data/0", storage}});
}

TEST(TorchFile, RefusesATensorLargerThanItsStorage) {
  const fs::path file = temporary("views.pt");
  write_text_file(file, tensor_file("(K\x04"
                                    "t"));
  const std::vector<NamedTensor> ok = read_torch_state_dict(file);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].tensor.sizes(), (std::vector<int64_t>{4}));
  write_text_file(file, tensor_file("(M\xe8\x03"
                                    "t"));  // 1000 elements
  EXPECT_THAT(error_of([&] { read_torch_state_dict(file); }),
              HasSubstr("tensor w reaches past the end of its storage"));
  fs::remove(file);
}

TEST(TorchFile, RefusesWhatIsNotAStateDict) {
  const fs::path file = temporary("foreign.pt");
  write_text_file(file, "not a checkpoint at all");
  EXPECT_THAT(error_of([&] { read_torch_state_dict(file); }),
              HasSubstr("is not a torch.save file"));
  write_text_file(file, zip_stored({{"x/other.txt", "hello"}}));
  EXPECT_THAT(error_of([&] { read_torch_state_dict(file); }), HasSubstr("without <name>/data.pkl"));
  // A pickle of a dict without tensors: the keys found are named.
  write_text_file(file, zip_stored({{"x/data.pkl",
                                     "\x80\x02}X\x05\x00\x00\x00"
                                     "epochK\x03s."s}}));
  EXPECT_THAT(error_of([&] { read_torch_state_dict(file); }),
              HasSubstr("holds a dict that is not a state_dict ('epoch' (an int))"));
  fs::remove(file);
}

}  // namespace
}  // namespace ssn::io
