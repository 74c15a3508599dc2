#include "ssn/data/volumes.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "golden.h"
#include "ssn/config/config.h"
#include "ssn/data/nnunet.h"
#include "ssn/data/synthetic.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/png.h"

namespace ssn::data {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

const CsvColumns kBrats{{"flair", "t1", "t1ce", "t2"}, "seg", "sampling_mask"};

class Volumes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
    root_ = fs::temp_directory_path() / ("ssn_volumes_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    BratsLikeOptions options;
    options.cases = 3;
    options.shape = {24, 28, 26};
    write_brats_like(root_ / "data", options);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path data(const std::string& name) const { return root_ / "data" / name; }
  // train.csv with `edit` applied to its text.
  fs::path edited_csv(const std::function<std::string(std::string)>& edit) {
    std::ifstream in(data("train.csv"));
    std::stringstream text;
    text << in.rdbuf();
    io::write_text_file(data("edited.csv"), edit(text.str()));
    return data("edited.csv");
  }
  fs::path root_;
};

TEST_F(Volumes, SynthBratsLikeLoadsWithItsGeometryAndNestedLabels) {
  const auto cases = read_case_csv(data("train.csv"), kBrats);
  ASSERT_EQ(cases.size(), 1u);
  const Volume volume = load_volume(cases[0], 4);
  EXPECT_EQ(volume.image.sizes(), (std::vector<int64_t>{4, 24, 28, 26}));
  io::Geometry expected;
  expected.spacing = {1.0, 1.2, 1.5};
  expected.origin = {-40.5, 62.25, -18.0};
  expected.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  EXPECT_TRUE(volume.geometry.matches(expected)) << volume.geometry.describe();
  for (int64_t label = 1; label < 4; ++label) {
    EXPECT_TRUE(volume.target.eq(label).any().item<bool>()) << "label " << label;
  }
  EXPECT_FALSE(volume.target.gt(0).logical_and(volume.mask.logical_not()).any().item<bool>());
}

// Spreadsheet programs save CSV with a UTF-8 byte-order mark: it is not part of the first column.
TEST_F(Volumes, AnIndexWithAByteOrderMarkReads) {
  const fs::path bom = edited_csv([](std::string s) { return "\xEF\xBB\xBF" + s; });
  const auto cases = read_case_csv(bom, kBrats);
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].id, "SYN3D-0000");
}

TEST_F(Volumes, BadIndexFilesAreErrorsNamingTheFile) {
  const fs::path missing_column =
      edited_csv([](std::string s) { return s.replace(s.find(",t1ce"), 5, ",t1c"); });
  EXPECT_THAT(error_of([&] { read_case_csv(missing_column, kBrats); }),
              HasSubstr("edited.csv: the header has no column 't1ce'"));
  const fs::path missing_file = edited_csv(
      [](std::string s) { return s.replace(s.rfind("_seg.nii.gz"), 11, "_sex.nii.gz"); });
  EXPECT_THAT(error_of([&] { read_case_csv(missing_file, kBrats); }),
              HasSubstr("edited.csv line 2: column 'seg' names "));
  const fs::path duplicate =
      edited_csv([](std::string s) { return s + s.substr(s.find('\n') + 1); });
  EXPECT_THAT(error_of([&] { read_case_csv(duplicate, kBrats); }),
              HasSubstr("edited.csv line 3: duplicate id 'SYN3D-0000'"));
  // Without a sampling mask column the mask is all ones.
  const fs::path no_mask = edited_csv([](std::string s) {
    std::string out;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";
    return out;
  });
  const auto cases = read_case_csv(no_mask, kBrats);
  EXPECT_TRUE(load_volume(cases[0], 4).mask.all().item<bool>());
}

TEST_F(Volumes, BadVolumesAreErrorsNamingTheFile) {
  VolumeCase c = read_case_csv(data("train.csv"), kBrats)[0];
  io::Geometry geometry = io::read_image_with_geometry(c.channels[0]).geometry;
  // Another shape.
  io::write_float_image(data("small.nii.gz"), at::zeros({24, 28, 25}), geometry);
  VolumeCase bad = c;
  bad.channels[2] = data("small.nii.gz");
  EXPECT_THAT(error_of([&] { load_volume(bad, 4); }),
              HasSubstr("small.nii.gz has shape [24, 28, 25], but "));
  // Another geometry.
  io::Geometry moved = geometry;
  moved.origin[0] += 3.0;
  io::write_float_image(data("moved.nii.gz"), at::zeros({24, 28, 26}), moved);
  bad = c;
  bad.channels[1] = data("moved.nii.gz");
  EXPECT_THAT(error_of([&] { load_volume(bad, 4); }),
              HasSubstr("moved.nii.gz has another geometry than "));
  // NaN voxels (patched into a written file: ssn's writers refuse NaN). ITK's NIfTI reader would
  // return them as 0; the read refuses them.
  at::Tensor nan = at::zeros({24, 28, 26});
  constexpr float kSentinel = 4321.5f;
  nan[3][4][5] = kSentinel;
  io::write_float_image(data("nan.nii"), nan, geometry);
  {
    std::fstream file(data("nan.nii"), std::ios::binary | std::ios::in | std::ios::out);
    std::string bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(&kSentinel), 4), 348);
    ASSERT_NE(at, std::string::npos);
    const float value = NAN;
    file.seekp(static_cast<std::streamoff>(at));
    file.write(reinterpret_cast<const char*>(&value), 4);
  }
  bad = c;
  bad.channels[3] = data("nan.nii");
  EXPECT_THAT(error_of([&] { load_volume(bad, 4); }),
              HasSubstr("nan.nii: it holds NaN or infinite values"));
  // Labels outside the classes.
  io::write_label_image(data("seg5.nii.gz"), at::full({24, 28, 26}, 5, at::kLong), geometry);
  bad = c;
  bad.target = data("seg5.nii.gz");
  EXPECT_THAT(error_of([&] { load_volume(bad, 4); }),
              HasSubstr("seg5.nii.gz holds labels in [5, 5], expected class indices in [0, 4)"));
}

TEST(Patches, ExtractionAlignsOutputInsideInputAndPadsWithZeros) {
  Volume volume;
  volume.image = at::arange(1, 1 + 10 * 12, at::kFloat).reshape({1, 10, 12});
  volume.target = at::arange(10 * 12, at::kLong).reshape({10, 12});
  volume.mask = at::ones({10, 12}, at::kBool);
  const Patch patch = extract_patch(volume, {0, 5}, {6, 6}, {2, 2});
  EXPECT_EQ(patch.image.sizes(), (std::vector<int64_t>{1, 6, 6}));
  EXPECT_EQ(patch.image[0][0][0].item<float>(), 0.0f);  // row -3: outside
  EXPECT_EQ(patch.image[0][3][0].item<float>(), volume.image[0][0][2].item<float>());
  // The output [centre - 1, centre + 1) sits at input offset 6 / 2 - 2 / 2 = 2.
  EXPECT_EQ(patch.target[1][0].item<int64_t>(), volume.target[0][4].item<int64_t>());
  EXPECT_FALSE(patch.mask[0][0].item<bool>());  // row -1: outside the volume
}

TEST(Patches, ForegroundProbabilityOneCentresOnForeground) {
  Volume volume;
  volume.image = at::randn({2, 20, 20, 20});
  volume.target = at::zeros({20, 20, 20}, at::kLong);
  volume.target[15][4][9] = 3;
  volume.mask = at::ones({20, 20, 20}, at::kBool);
  PatchOptions options;
  options.input_size = {9, 9, 9};
  options.output_size = {1, 1, 1};
  options.foreground_probability = 1.0;
  at::Generator generator = at::detail::createCPUGenerator(0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(sample_patch(volume, options, generator).target.item<int64_t>(), 3);
  }
}

TEST(Patches, ForegroundProbabilityZeroCentresOnBackgroundInsideTheMask) {
  Volume volume;
  volume.image = at::randn({1, 12, 12, 12});
  volume.target = at::zeros({12, 12, 12}, at::kLong);
  volume.target.slice(0, 2, 10).slice(1, 2, 10).slice(2, 2, 10).fill_(1);
  volume.mask = at::zeros({12, 12, 12}, at::kBool);
  volume.mask.slice(0, 1, 11).slice(1, 1, 11).slice(2, 1, 11).fill_(true);
  PatchOptions options;
  options.input_size = {3, 3, 3};
  options.output_size = {1, 1, 1};
  options.foreground_probability = 0.0;
  at::Generator generator = at::detail::createCPUGenerator(4);
  for (int i = 0; i < 30; ++i) {
    const PatchSpec spec = draw_patch(volume, options, generator);
    const auto& c = spec.centre;
    EXPECT_EQ(volume.target[c[0]][c[1]][c[2]].item<int64_t>(), 0);
    EXPECT_TRUE(volume.mask[c[0]][c[1]][c[2]].item<bool>());
  }
}

// A volume whose image holds each voxel's coordinates (100 z + 10 y + x) and whose target and mask
// are the same pattern: after augmentation, image, target and mask stay aligned voxel for voxel.
Volume coordinate_volume() {
  Volume volume;
  const at::Tensor z = at::arange(6, at::kLong).reshape({6, 1, 1});
  const at::Tensor y = at::arange(6, at::kLong).reshape({1, 6, 1});
  const at::Tensor x = at::arange(6, at::kLong).reshape({1, 1, 6});
  const at::Tensor code = (100 * z + 10 * y + x).expand({6, 6, 6}).contiguous();
  volume.image = code.to(at::kFloat).unsqueeze(0);
  volume.target = code;
  volume.mask = (x + y + z).expand({6, 6, 6}).remainder(2).eq(0).contiguous();
  return volume;
}

// The reference's BraTS config (allowed_planes [[2, 1]], allowed_axis [2, 1]; axes spatial from
// 0 in z, y, x order) turns and flips the y-x plane: every voxel keeps its z, and image, target
// and mask move together.
TEST(Patches, ReferenceAugmentationTurnsAndFlipsTheYxPlaneOnly) {
  const config::Config reference = config::load_config(std::string(SSN_SOURCE_DIR) +
                                                       "/tests/data/reference/"
                                                       "rank_10_mc_20_patch_110.json");
  PatchOptions options;
  options.input_size = options.output_size = {6, 6, 6};
  options.flip_probability = 1.0;
  options.flip_axes = reference.training.flip_axes;
  options.rotation_probability = 1.0;
  for (const auto& plane : reference.training.rotation_planes) {
    options.rotation_planes.emplace_back(plane[0], plane[1]);
  }
  ASSERT_EQ(options.flip_axes, (std::vector<int64_t>{2, 1}));
  ASSERT_EQ(options.rotation_planes.size(), 1u);
  const Volume volume = coordinate_volume();
  at::Generator generator = at::detail::createCPUGenerator(9);
  std::set<std::vector<int64_t>> orientations;
  for (int i = 0; i < 40; ++i) {
    PatchSpec spec = draw_patch(volume, options, generator);
    spec.centre = {3, 3, 3};  // the whole volume
    const Patch patch = make_patch(volume, spec, options);
    EXPECT_TRUE(patch.image[0].to(at::kLong).equal(patch.target));
    EXPECT_TRUE(patch.mask.equal(patch.target.remainder(10)
                                     .add(patch.target.div(10, "floor").remainder(10))
                                     .add(patch.target.div(100, "floor"))
                                     .remainder(2)
                                     .eq(0)));
    const at::Tensor z = patch.target.div(100, "floor");
    EXPECT_TRUE(z.equal(at::arange(6, at::kLong).reshape({6, 1, 1}).expand({6, 6, 6})))
        << "a voxel left its z slice";
    orientations.insert(
        {patch.target[0][0][0].item<int64_t>(), patch.target[0][0][5].item<int64_t>()});
  }
  // Quarter turns either way composed with the flip of both axes: 0, 90 or 270 degrees.
  EXPECT_EQ(orientations.size(), 3u) << "the turns should vary";
}

// Out-of-range axes are refused, in the config and in the library.
TEST(Patches, OutOfRangeAxesAreRefused) {
  PatchOptions options;
  options.input_size = options.output_size = {6, 6, 6};
  options.flip_axes = {3};
  const Volume volume = coordinate_volume();
  at::Generator generator = at::detail::createCPUGenerator(0);
  EXPECT_THAT(error_of([&] { draw_patch(volume, options, generator); }),
              HasSubstr("PatchOptions.flip_axes: expected spatial axes in 0..2, got 3"));
  options.flip_axes.clear();
  options.rotation_planes = {{2, 3}};
  EXPECT_THAT(error_of([&] { draw_patch(volume, options, generator); }),
              HasSubstr("PatchOptions.rotation_planes: expected pairs of different spatial axes"));
}

}  // namespace
}  // namespace ssn::data

namespace ssn::data {
namespace {

TEST(NnUnetRaw, IndexesCasesAsCsvThatLoad) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = fs::temp_directory_path() / ("ssn_nnunet_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path dataset = root / "Dataset001_Tiny";
  fs::create_directories(dataset / "imagesTr");
  fs::create_directories(dataset / "labelsTr");
  fs::create_directories(dataset / "imagesTs");
  io::write_text_file(dataset / "dataset.json",
                      R"({"channel_names": {"0": "T1", "1": "Flair Weighted"},
    "labels": {"background": 0, "tumour": 1, "oedema": 2}, "numTraining": 4,
    "file_ending": ".nii.gz"})");
  for (int i = 0; i < 4; ++i) {
    const std::string id = "case_" + std::to_string(i);
    for (int c = 0; c < 2; ++c) {
      io::write_float_image(dataset / "imagesTr" / (id + "_000" + std::to_string(c) + ".nii.gz"),
                            at::randn({5, 6, 7}));
    }
    io::write_label_image(dataset / "labelsTr" / (id + ".nii.gz"),
                          at::randint(3, {5, 6, 7}, at::kLong));
  }
  for (int c = 0; c < 2; ++c) {
    io::write_float_image(dataset / "imagesTs" / ("new_000" + std::to_string(c) + ".nii.gz"),
                          at::randn({5, 6, 7}));
  }
  NnUnetIndexOptions options;
  options.fractions = {0.5, 0.25, 0.25};
  const NnUnetIndex index = index_nnunet_raw(dataset, root / "index", options);
  EXPECT_EQ(index.channels, (std::vector<std::string>{"t1", "flair_weighted"}));
  EXPECT_EQ(index.num_classes, 3);
  EXPECT_EQ(index.train, 2);
  EXPECT_EQ(index.valid, 1);
  EXPECT_EQ(index.test, 1);
  EXPECT_EQ(index.unlabelled, 1);
  const CsvColumns columns{{"t1", "flair_weighted"}, "seg", ""};
  const auto train = read_case_csv(root / "index" / "train.csv", columns);
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(load_volume(train[0], 3).image.sizes(), (std::vector<int64_t>{2, 5, 6, 7}));
  EXPECT_EQ(
      read_case_csv(root / "index" / "unlabelled.csv", {{"t1", "flair_weighted"}, "", ""}).size(),
      1u);
  // A training image without a label goes to unlabelled.csv and is counted, not dropped.
  for (int c = 0; c < 2; ++c) {
    io::write_float_image(dataset / "imagesTr" / ("nolabel_000" + std::to_string(c) + ".nii.gz"),
                          at::randn({5, 6, 7}));
  }
  const NnUnetIndex with_orphan = index_nnunet_raw(dataset, root / "index_orphan", options);
  EXPECT_EQ(with_orphan.training_images_without_labels, 1);
  EXPECT_EQ(with_orphan.unlabelled, 2);
  EXPECT_EQ(with_orphan.train + with_orphan.valid + with_orphan.test, 4);
  const auto unlabelled =
      read_case_csv(root / "index_orphan" / "unlabelled.csv", {{"t1", "flair_weighted"}, "", ""});
  ASSERT_EQ(unlabelled.size(), 2u);
  EXPECT_EQ(unlabelled[0].id + "," + unlabelled[1].id, "nolabel,new");
  // A case without its second channel.
  fs::remove(dataset / "imagesTr" / "case_2_0001.nii.gz");
  EXPECT_THAT(error_of([&] { index_nnunet_raw(dataset, root / "index2", options); }),
              HasSubstr("case case_2: "));
  EXPECT_FALSE(fs::exists(root / "index2"));
  fs::remove_all(root);
}

// nnU-Net's normalisation, stored next to the index and applied on load: a CT channel clipped to
// the training foreground's 0.5 .. 99.5 percentiles and z-scored with its statistics; another
// channel z-scored per image over its non-zero voxels.
TEST(NnUnetRaw, NormalisesCtFromTheTrainingForegroundAndOtherChannelsPerImage) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = fs::temp_directory_path() / ("ssn_nnunet_ct_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path dataset = root / "Dataset002_Ct";
  fs::create_directories(dataset / "imagesTr");
  fs::create_directories(dataset / "labelsTr");
  io::write_text_file(dataset / "dataset.json",
                      R"({"channel_names": {"0": "CT", "1": "T2"},
    "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"})");
  for (int i = 0; i < 3; ++i) {
    const std::string id = "case_" + std::to_string(i);
    at::Tensor ct = at::full({8, 12, 12}, -1000.0f);  // air around an organ of 600 voxels
    ct.slice(0, 1, 7).slice(1, 1, 11).slice(2, 1, 11).copy_(at::randn({6, 10, 10}) * 30 + 40);
    ct[3][3][3] = 3000;  // one bright voxel in 600 (0.17 %): above the 99.5 percentile
    io::write_float_image(dataset / "imagesTr" / (id + "_0000.nii.gz"), ct);
    at::Tensor t2 = at::rand({8, 12, 12}) * 500 + 100;
    t2.slice(0, 0, 1).zero_();
    io::write_float_image(dataset / "imagesTr" / (id + "_0001.nii.gz"), t2);
    at::Tensor label = at::zeros({8, 12, 12}, at::kLong);
    label.slice(0, 1, 7).slice(1, 1, 11).slice(2, 1, 11).fill_(1);
    io::write_label_image(dataset / "labelsTr" / (id + ".nii.gz"), label);
  }
  NnUnetIndexOptions options;
  options.fractions = {1.0, 0.0, 0.0};
  const NnUnetIndex index = index_nnunet_raw(dataset, root / "index", options);
  EXPECT_EQ(index.ct_channels, std::vector<std::string>{"ct"});
  const nlohmann::json n =
      nlohmann::json::parse(io::read_text_file(root / "index" / kNormalisationFile));
  const auto& ct = n["channels"]["ct"];
  EXPECT_EQ(ct["scheme"], "ct");
  EXPECT_EQ(n["channels"]["t2"]["scheme"], "nonzero_zscore");
  // The foreground is the organ (about 40 +- 30), never the air; the outlier is above 99.5 %.
  EXPECT_GT(ct["lower"].get<double>(), -100);
  EXPECT_LT(ct["upper"].get<double>(), 3000);
  EXPECT_NEAR(ct["mean"].get<double>(), 40 + 2960.0 / 600, 5);
  EXPECT_EQ(ct["voxels"], 30000);
  const auto cases = read_case_csv(root / "index" / "train.csv", {{"ct", "t2"}, "seg", ""});
  ASSERT_EQ(cases.size(), 3u);
  const Volume v = load_volume(cases[0], 2);
  const at::Tensor raw = io::read_image(cases[0].channels[0]).to(at::kFloat);
  const at::Tensor expected =
      (raw.clamp(ct["lower"].get<double>(), ct["upper"].get<double>()) - ct["mean"].get<double>()) /
      ct["std"].get<double>();
  EXPECT_TRUE(at::allclose(v.image[0], expected, 1e-5, 1e-5));
  const at::Tensor t2 = v.image[1];
  EXPECT_TRUE(t2[0].eq(0).all().item<bool>());
  const at::Tensor inside = t2.slice(0, 1);
  EXPECT_NEAR(inside.mean().item<double>(), 0.0, 1e-4);
  EXPECT_NEAR(inside.std(false).item<double>(), 1.0, 1e-4);
  // A damaged file is an error naming it and the field.
  io::write_text_file(root / "index" / kNormalisationFile,
                      R"({"format": "ssn-normalisation", "version": 1,
    "channels": {"ct": {"scheme": "ct", "lower": 0}}})");
  EXPECT_THAT(error_of([&] {
                read_case_csv(root / "index" / "train.csv", {{"ct"}, "seg", ""});
              }),
              HasSubstr("normalisation.json: field channels.ct.upper: expected a number"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace ssn::data
