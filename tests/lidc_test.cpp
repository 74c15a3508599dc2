#include "ssn/data/lidc.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "golden.h"
#include "ssn/data/synthetic.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::data {
namespace {

using ssn::testing::error_of;

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class LidcFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
    root_ = fs::temp_directory_path() / ("ssn_lidc_" + std::to_string(::getpid()));
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A hand-made folder in the LIDC layout: one patient, one 16 x 16 slice, 2 annotators.
  void write_slice(const std::string& split, const at::Tensor& image,
                   const std::vector<at::Tensor>& masks) {
    fs::create_directories(root_ / split / "images" / "P1");
    fs::create_directories(root_ / split / "gt" / "P1");
    io::write_label_image(root_ / split / "images" / "P1" / "s0.png", image);
    for (size_t a = 0; a < masks.size(); ++a) {
      io::write_label_image(root_ / split / "gt" / "P1" / ("s0_l" + std::to_string(a + 1) + ".png"),
                            masks[a]);
    }
  }
  fs::path root_;
};

TEST_F(LidcFolder, HandMadeFolderIsCroppedDownscaledAndNormalised) {
  at::Tensor image = at::arange(256, at::kLong).reshape({16, 16});
  at::Tensor left = at::zeros({16, 16}, at::kLong);
  left.slice(1, 0, 8).fill_(255);  // 0/255 mask
  at::Tensor top = at::zeros({16, 16}, at::kLong);
  top.slice(0, 0, 8).fill_(1);  // 0/1 mask
  write_slice("train", image, {left, top});
  LidcOptions options;
  options.crop = 8;
  options.size = 4;
  options.annotators = 2;
  const LidcDataset dataset(root_, "train", options);
  ASSERT_EQ(dataset.size(), 1);
  const LidcExample& example = dataset[0];
  EXPECT_EQ(example.id, "P1/s0");
  EXPECT_EQ(example.image.sizes(), at::IntArrayRef({1, 4, 4}));
  EXPECT_NEAR(example.image.mean().item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(example.image.std(false).item<double>(), 1.0, 1e-5);
  ASSERT_EQ(example.annotations.sizes(), at::IntArrayRef({2, 4, 4}));
  // The centre crop covers columns 4..11: the left half of it is foreground in mask 1.
  EXPECT_TRUE(example.annotations[0].slice(1, 0, 2).eq(1).all().item<bool>());
  EXPECT_TRUE(example.annotations[0].slice(1, 2, 4).eq(0).all().item<bool>());
  EXPECT_TRUE(example.annotations[1].slice(0, 0, 2).eq(1).all().item<bool>());

  at::Generator generator = at::detail::createCPUGenerator(1);
  const TrainingBatch batch = make_training_batch(dataset, {0, 0, 0}, generator);
  EXPECT_EQ(batch.images.sizes(), at::IntArrayRef({3, 1, 4, 4}));
  EXPECT_EQ(batch.targets.sizes(), at::IntArrayRef({3, 4, 4}));
  EXPECT_EQ(batch.targets.sum().item<int64_t>(), 3 * 8);  // each mask covers half of the crop
}

// The 8 x 8 centre crop (rows and columns 4..11) of a 16 x 16 image, downscaled to 4 x 4, is the
// mean of each 2 x 2 block, then z-scored; a mask block is foreground when at least half of it
// is (2 of 4 -> 1, 1 of 4 -> 0).
TEST_F(LidcFolder, DownscalingAveragesBlocksAndTakesTheMajorityOfMasks) {
  at::Tensor image = (at::arange(256, at::kLong).reshape({16, 16}) * 7) % 251;
  at::Tensor mask = at::zeros({16, 16}, at::kLong);
  mask.slice(0, 4, 12).slice(1, 4, 12).fill_(255);             // the crop is all foreground ...
  mask.slice(0, 4, 12).slice(1, 4, 12).select(0, 0).fill_(0);  // ... but its first row
  mask[5][4] = 0;  // block (0, 0) keeps 1 of 4: background
  write_slice("train", image, {mask});
  LidcOptions options;
  options.crop = 8;
  options.size = 4;
  options.annotators = 1;
  const LidcDataset dataset(root_, "train", options);
  const LidcExample& example = dataset[0];
  const at::Tensor blocks =
      image.slice(0, 4, 12).slice(1, 4, 12).to(at::kDouble).reshape({4, 2, 4, 2}).mean({1, 3});
  const at::Tensor expected = (blocks - blocks.mean()) / blocks.std(/*unbiased=*/false);
  EXPECT_LT((example.image[0].to(at::kDouble) - expected).abs().max().item<double>(), 1e-5);
  at::Tensor expected_mask = at::ones({4, 4}, at::kLong);
  expected_mask[0][0] = 0;  // rows 4-5, columns 4-5: one foreground pixel of four
  EXPECT_TRUE(example.annotations[0].to(at::kLong).equal(expected_mask)) << example.annotations[0];
}

// Flips and quarter turns move image and mask together: the image is bright exactly where the
// (asymmetric, L-shaped) mask is, before and after augmentation, and several orientations occur.
TEST_F(LidcFolder, AugmentedImagesAndMasksStayAligned) {
  at::Tensor mask = at::zeros({16, 16}, at::kLong);
  mask.slice(0, 2, 12).slice(1, 3, 6).fill_(1);
  mask.slice(0, 9, 12).slice(1, 3, 13).fill_(1);
  write_slice("train", mask * 200 + 20, {mask, mask});
  LidcOptions options;
  options.crop = 16;
  options.size = 16;
  options.annotators = 2;
  const LidcDataset dataset(root_, "train", options);
  at::Generator generator = at::detail::createCPUGenerator(11);
  std::set<std::vector<int64_t>> orientations;
  for (int i = 0; i < 10; ++i) {
    const TrainingBatch batch = make_training_batch(dataset, {0, 0}, generator);
    for (int64_t b = 0; b < 2; ++b) {
      EXPECT_TRUE(batch.images[b][0].gt(0).to(at::kLong).equal(batch.targets[b]));
      orientations.insert(
          {batch.targets[b][2][3].item<int64_t>(), batch.targets[b][11][12].item<int64_t>(),
           batch.targets[b][13][3].item<int64_t>(), batch.targets[b][4][12].item<int64_t>()});
    }
  }
  EXPECT_GE(orientations.size(), 4u);
}

// PHiSeg's augmentation: half of the examples untouched, the others rotated (at most 10 degrees)
// and zoomed in (a crop of 98/128 to all of the side) with image and mask moved together.
TEST_F(LidcFolder, PhisegAugmentationWarpsImageAndMaskTogetherHalfOfTheTime) {
  at::Tensor mask = at::zeros({32, 32}, at::kLong);
  mask.slice(0, 6, 24).slice(1, 8, 14).fill_(1);
  mask.slice(0, 18, 24).slice(1, 8, 26).fill_(1);
  const at::Tensor image = (mask * 200 + 20).to(at::kFloat).unsqueeze(0);
  at::Generator generator = at::detail::createCPUGenerator(5);
  int untouched = 0;
  double smallest_area = 1e9, largest_area = 0;
  for (int i = 0; i < 60; ++i) {
    const auto [warped, target] = phiseg_augment(image, mask, 2, generator);
    ASSERT_EQ(warped.sizes(), image.sizes());
    ASSERT_EQ(target.sizes(), mask.sizes());
    if (warped.equal(image) && target.equal(mask)) {
      ++untouched;
      continue;
    }
    // Bilinear blurs the edge by a pixel: the thresholded image and the labels agree elsewhere.
    const double agree = warped[0].gt(120).eq(target.eq(1)).to(at::kDouble).mean().item<double>();
    EXPECT_GT(agree, 0.97) << "draw " << i;
    const double area = target.sum().item<double>() / mask.sum().item<double>();
    smallest_area = std::min(smallest_area, area);
    largest_area = std::max(largest_area, area);
  }
  EXPECT_GE(untouched, 18);
  EXPECT_LE(untouched, 42);
  // Zooming in by 1 .. 32/24 (the smallest crop of 32 is 32 - round(30 * 32 / 128) = 24) grows
  // the mask's area by up to 1.78.
  EXPECT_GT(smallest_area, 0.9);
  EXPECT_LT(largest_area, 1.85);
  EXPECT_GT(largest_area, 1.2);
}

// data.train_targets "all_annotators": every annotator's mask, each moved with the image. The
// image encodes both masks (20 in the background, 120 where the first marks, 220 where the
// second, a part of the first, marks too), so each target must match its threshold of the image.
TEST_F(LidcFolder, AllAnnotationsMoveWithTheImageUnderEitherAugmentation) {
  at::Tensor first = at::zeros({32, 32}, at::kLong);
  first.slice(0, 6, 24).slice(1, 8, 14).fill_(1);
  first.slice(0, 18, 24).slice(1, 8, 26).fill_(1);
  at::Tensor second = first.clone();
  second.slice(0, 18, 24).slice(1, 14, 26).fill_(0);  // the vertical arm only
  write_slice("train", first * 100 + second * 100 + 20, {first, second});
  LidcOptions options;
  options.crop = 32;
  options.size = 32;
  options.annotators = 2;
  options.intensity = LidcOptions::Intensity::kMinusHalf;  // 20, 120, 220 -> -0.42, -0.03, 0.36
  const LidcDataset dataset(root_, "train", options);
  at::Generator generator = at::detail::createCPUGenerator(3);
  for (int i = 0; i < 8; ++i) {
    const TrainingBatch batch =
        make_training_batch(dataset, {0, 0}, generator, LidcAugmentation::kFlipsAndTurns, true);
    ASSERT_EQ(batch.targets.sizes(), at::IntArrayRef({2, 2, 32, 32}));
    for (int64_t b = 0; b < 2; ++b) {
      EXPECT_TRUE(batch.images[b][0].gt(-0.2).to(at::kLong).equal(batch.targets[b][0]));
      EXPECT_TRUE(batch.images[b][0].gt(0.15).to(at::kLong).equal(batch.targets[b][1]));
    }
  }
  // PHiSeg's warp: one transform for the image and both masks, the one a single mask would get
  // from the same generator state.
  const at::Tensor image = (first * 100 + second * 100 + 20).to(at::kFloat).unsqueeze(0);
  const at::Tensor both = at::stack({first, second});
  int warped_draws = 0;
  for (int i = 0; i < 20; ++i) {
    at::Generator together = at::detail::createCPUGenerator(100 + i);
    at::Generator alone = at::detail::createCPUGenerator(100 + i);
    const auto [warped, targets] = phiseg_augment(image, both, 2, together);
    const auto [warped_alone, target_alone] = phiseg_augment(image, second, 2, alone);
    ASSERT_EQ(targets.sizes(), both.sizes());
    EXPECT_TRUE(warped.equal(warped_alone));
    EXPECT_TRUE(targets[1].equal(target_alone));
    if (!warped.equal(image)) ++warped_draws;
    // Bilinear blurs the edges, where the three levels make the thresholds a pixel off.
    EXPECT_GT(warped[0].gt(70).eq(targets[0].eq(1)).to(at::kDouble).mean().item<double>(), 0.95);
    EXPECT_GT(warped[0].gt(170).eq(targets[1].eq(1)).to(at::kDouble).mean().item<double>(), 0.95);
  }
  EXPECT_GE(warped_draws, 4);
}

TEST_F(LidcFolder, MinusHalfIntensityIsPhisegs) {
  const at::Tensor image = (at::arange(256, at::kLong).reshape({16, 16}) * 3) % 256;
  write_slice("train", image, {at::zeros({16, 16}, at::kLong)});
  LidcOptions options;
  options.crop = 16;
  options.size = 16;
  options.annotators = 1;
  options.intensity = LidcOptions::Intensity::kMinusHalf;
  const LidcDataset dataset(root_, "train", options);
  const at::Tensor expected = image.to(at::kFloat) / 255.0f - 0.5f;
  EXPECT_TRUE(at::allclose(dataset[0].image[0], expected, 0, 1e-6));
}

TEST_F(LidcFolder, PrefetchedBatchesEqualBatchesMadeOneByOne) {
  at::Tensor image = at::arange(256, at::kLong).reshape({16, 16});
  at::Tensor mask = at::zeros({16, 16}, at::kLong);
  mask.slice(0, 3, 9).slice(1, 2, 12).fill_(1);
  write_slice("train", image, {mask, mask.flip({0})});
  LidcOptions options;
  options.crop = 16;
  options.size = 8;
  options.annotators = 2;
  const LidcDataset dataset(root_, "train", options);
  const std::vector<std::vector<int64_t>> batches = {{0, 0}, {0}, {0, 0, 0}, {0}};
  at::Generator direct = at::detail::createCPUGenerator(5);
  at::Generator prefetched = at::detail::createCPUGenerator(5);
  {
    BatchPrefetcher prefetcher(dataset, batches, prefetched, LidcAugmentation::kFlipsAndTurns,
                               /*all_annotations=*/false, /*depth=*/2);
    for (const auto& indices : batches) {
      const TrainingBatch expected = make_training_batch(dataset, indices, direct);
      const TrainingBatch actual = prefetcher.next();
      EXPECT_TRUE(actual.images.equal(expected.images));
      EXPECT_TRUE(actual.targets.equal(expected.targets));
    }
    EXPECT_THROW(prefetcher.next(), c10::Error);
  }
  EXPECT_TRUE(prefetched.get_state().equal(direct.get_state()));
}

TEST_F(LidcFolder, BadFoldersAreErrorsThatNameTheFile) {
  LidcOptions options;
  options.crop = 8;
  options.size = 8;
  options.annotators = 2;
  EXPECT_THAT(error_of([&] { scan_lidc_split(root_ / "nope", "train", options); }),
              HasSubstr("is not a folder"));
  fs::create_directories(root_);
  EXPECT_THAT(error_of([&] { scan_lidc_split(root_, "train", options); }),
              HasSubstr("has no train/images folder"));
  const at::Tensor image = at::zeros({16, 16}, at::kLong);
  write_slice("train", image, {image});  // one annotator of two
  EXPECT_THAT(error_of([&] { scan_lidc_split(root_, "train", options); }),
              HasSubstr("s0_l2.png is missing"));
  write_slice("train", image, {image, at::zeros({16, 15}, at::kLong)});
  EXPECT_THAT(error_of([&] { LidcDataset(root_, "train", options); }),
              HasSubstr("s0_l2.png has shape [16, 15], but its image"));
  write_slice("train", image, {image, at::arange(256, at::kLong).reshape({16, 16}) % 3});
  EXPECT_THAT(error_of([&] { LidcDataset(root_, "train", options); }),
              HasSubstr("s0_l2.png is not a binary mask: it holds 3 distinct values from 0 to 2"));
}

TEST(SynthLidcLike, WritesTheLayoutTheReaderReads) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path out = fs::temp_directory_path() / ("ssn_synth_" + std::to_string(::getpid()));
  fs::remove_all(out);
  LidcLikeOptions options;
  options.cases = 20;
  options.side = 64;
  const SplitCounts counts = write_lidc_like(out, options);
  EXPECT_EQ(counts.train + counts.val + counts.test, 20);
  EXPECT_EQ(counts.train, 16);
  LidcOptions read;
  read.crop = 64;
  read.size = 32;
  const LidcDataset train(out, "train", read);
  EXPECT_EQ(train.size(), 16);
  // Annotators disagree somewhere, and at least one marks every lesion.
  int64_t disagreements = 0;
  for (int64_t i = 0; i < train.size(); ++i) {
    const at::Tensor masks = train[i].annotations;
    EXPECT_GT(masks.sum().item<int64_t>(), 0);
    disagreements += (masks.amax(0) != masks.amin(0)).sum().item<int64_t>();
  }
  EXPECT_GT(disagreements, 0);
  EXPECT_THAT(error_of([&] { write_lidc_like(out, options); }),
              HasSubstr("already exists and is not an empty folder"));
  fs::remove_all(out);
}

}  // namespace
}  // namespace ssn::data
