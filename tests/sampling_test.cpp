#include "ssn/evaluation/sampling.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "golden.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::evaluation {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

// Maps of a random distribution: C classes, rank R, spatial shape `spatial`; the mean has a clear
// structure so that argmax ties do not occur.
PredictionMaps random_maps(int64_t classes, int64_t rank, std::vector<int64_t> spatial,
                           uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  std::vector<int64_t> shape = {classes};
  shape.insert(shape.end(), spatial.begin(), spatial.end());
  std::vector<int64_t> factor_shape = shape;
  factor_shape[0] = classes * rank;
  const auto options = at::TensorOptions(at::kFloat);
  return {at::randn(shape, generator, options) * 2,
          at::rand(shape, generator, options) * 0.5 + 0.05,
          at::randn(factor_shape, generator, options)};
}

// The fused kernel against the distribution's own sampler from the same noise, with every
// control: the labels agree except where two logits are within float rounding of each other.
TEST(SampleLabels, EqualsTheArgmaxOfLowRankNormalSamplesFromTheSameNoise) {
  const PredictionMaps maps = random_maps(4, 3, {7, 9, 2301}, 4);  // odd sizes: partial tiles
  const LowRankNormal distribution = distribution_from_maps(
      maps.mean.unsqueeze(0), maps.cov_diag.unsqueeze(0), maps.cov_factor.unsqueeze(0));
  SamplingControls controls;
  controls.temperature = 0.7;
  controls.class_weights = at::tensor({1.0, -0.5, 2.0, 0.0});
  controls.rank_weights = at::tensor({0.5, 1.5, -1.0});
  at::Generator generator = at::detail::createCPUGenerator(9);
  const int64_t m = 3;
  const at::Tensor eps_W = at::randn({m, 3}, generator, at::TensorOptions(at::kFloat));
  const at::Tensor eps_D =
      at::randn({m, maps.mean.numel()}, generator, at::TensorOptions(at::kFloat));
  const at::Tensor logits = distribution.rsample_from_noise(eps_W.unsqueeze(1), eps_D.unsqueeze(1),
                                                            controls);  // [m, 1, N]
  const at::Tensor expected = class_argmax(logits.reshape({m, 4, -1}), 1);
  const at::Tensor labels = sample_labels(maps, eps_W, eps_D, controls);
  EXPECT_EQ(labels.sizes(), at::IntArrayRef({m, 7, 9, 2301}));
  const double agreement =
      labels.reshape({m, -1}).eq(expected).to(at::kDouble).mean().item<double>();
  EXPECT_GT(agreement, 0.99999);
  EXPECT_THAT(error_of([&] { sample_labels(maps, eps_W.narrow(1, 0, 2), eps_D, controls); }),
              HasSubstr("the noise must be eps_W [m, 3]"));
}

// draw_samples draws the diagonal noise tile by tile from seeds (not ATen's one stream): the
// samples depend on the seed only, and their class frequencies are those of the distribution.
TEST(DrawSamples, DependOnTheSeedNotTheThreadsAndFollowTheDistribution) {
  const PredictionMaps maps = random_maps(3, 2, {5, 1000}, 6);  // 5000 pixels: several tiles
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const SampleStatistics one = draw_samples(maps, 400, {}, at::detail::createCPUGenerator(8));
  at::set_num_threads(2);
  const SampleStatistics two = draw_samples(maps, 400, {}, at::detail::createCPUGenerator(8));
  at::set_num_threads(threads);
  EXPECT_TRUE(one.frequency.equal(two.frequency));
  // The same frequencies, up to Monte-Carlo error, from LowRankNormal's own sampler.
  const LowRankNormal distribution = distribution_from_maps(
      maps.mean.unsqueeze(0), maps.cov_diag.unsqueeze(0), maps.cov_factor.unsqueeze(0));
  at::Generator generator = at::detail::createCPUGenerator(9);
  const at::Tensor labels =
      class_argmax(distribution.rsample(400, generator).reshape({400, 3, -1}), 1);  // [400, S]
  for (int64_t c = 0; c < 3; ++c) {
    const at::Tensor expected = labels.eq(c).to(at::kFloat).mean(0);
    const double gap = (one.frequency[c].reshape({-1}) - expected).abs().mean().item<double>();
    EXPECT_LT(gap, 0.025) << "class " << c;  // two independent estimates: 0.017 apart here
  }
}

// The path draw_samples takes off the CPU (LowRankNormal on the device, the diagonal noise rebuilt
// tile by tile) gives the fused pass's samples: run here on the CPU, with partial tiles, several
// chunks' worth of samples and every control.
TEST(DrawSamples, UnfusedPathDrawsTheFusedPassSamples) {
  const PredictionMaps maps = random_maps(3, 2, {3, 2100}, 12);  // 6300 pixels: a partial tile
  SamplingControls controls;
  controls.temperature = 1.3;
  controls.class_weights = at::tensor({1.0, 0.5, 2.0});
  controls.rank_weights = at::tensor({-1.0, 0.5});
  std::vector<at::Tensor> fused, unfused;
  const SampleStatistics a =
      draw_samples(maps, 9, controls, at::detail::createCPUGenerator(5),
                   [&](int64_t, const at::Tensor& labels) { fused.push_back(labels.clone()); });
  const SampleStatistics b = draw_samples_unfused(
      maps, 9, controls, at::detail::createCPUGenerator(5),
      [&](int64_t, const at::Tensor& labels) { unfused.push_back(labels.clone()); });
  ASSERT_EQ(fused.size(), 9u);
  ASSERT_EQ(unfused.size(), 9u);
  const at::Tensor x = at::stack(fused), y = at::stack(unfused);
  EXPECT_EQ(y.scalar_type(), at::kByte);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_GT(x.eq(y).to(at::kDouble).mean().item<double>(), 0.99999);
  EXPECT_TRUE(x.ne(x[0]).any().item<bool>());  // the samples differ from each other
  EXPECT_LT((a.frequency - b.frequency).abs().max().item<float>(), 0.12f);  // one label of 9
  EXPECT_EQ(b.entropy.sizes(), a.entropy.sizes());
}

TEST(DrawSamples, TemperatureZeroReproducesTheArgmaxOfTheMeanExactly) {
  const PredictionMaps maps = random_maps(3, 4, {9, 11}, 1);
  SamplingControls controls;
  controls.temperature = 0.0;
  const at::Tensor mode = maps.mean.argmax(/*dim=*/0).to(at::kByte);
  int64_t seen = 0;
  const SampleStatistics statistics = draw_samples(
      maps, 7, controls, at::detail::createCPUGenerator(0), [&](int64_t, const at::Tensor& labels) {
        EXPECT_TRUE(labels.equal(mode));
        ++seen;
      });
  EXPECT_EQ(seen, 7);
  EXPECT_EQ(statistics.entropy.abs().max().item<float>(), 0.0f);
}

TEST(DrawSamples, FrequenciesSumToOneAndEntropyFollowsThem) {
  const PredictionMaps maps = random_maps(3, 2, {6, 5}, 2);
  std::vector<at::Tensor> samples;
  const SampleStatistics statistics =
      draw_samples(maps, 40, {}, at::detail::createCPUGenerator(3),
                   [&](int64_t, const at::Tensor& labels) { samples.push_back(labels); });
  ASSERT_EQ(samples.size(), 40u);
  const at::Tensor stacked = at::stack(samples).to(at::kLong);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_TRUE(at::allclose(statistics.frequency[c], stacked.eq(c).to(at::kFloat).mean(0)));
  }
  EXPECT_TRUE(at::allclose(statistics.frequency.sum(0), at::ones({6, 5})));
  const at::Tensor f = statistics.frequency.to(at::kDouble);
  const at::Tensor expected = -at::where(f > 0, f * f.log(), at::zeros_like(f)).sum(0);
  EXPECT_TRUE(at::allclose(statistics.entropy.to(at::kDouble), expected, 1e-6, 1e-6));
  EXPECT_GT(statistics.entropy.max().item<float>(), 0.1f);  // the samples do vary
}

TEST(DrawSamples, ChecksControlsAgainstTheMaps) {
  const PredictionMaps maps = random_maps(2, 3, {4, 4}, 4);
  SamplingControls controls;
  controls.class_weights = at::ones({3});
  EXPECT_THAT(error_of([&] { draw_samples(maps, 2, controls, at::detail::createCPUGenerator(0)); }),
              HasSubstr("class_weights must have C = 2"));
}

TEST(SweepSamples, RowsShareTheNoiseAndClassWeightZeroFreezesThatClass) {
  const PredictionMaps maps = random_maps(2, 3, {8, 8}, 5);
  SamplingControls frozen;  // every class at its mean logit
  frozen.class_weights = at::zeros({2});
  SamplingControls only_class_1;  // only class 1's logits move
  only_class_1.class_weights = at::tensor({0.0f, 1.0f});
  const at::Tensor rows =
      sweep_samples(maps, {SamplingControls{}, SamplingControls{}, frozen, only_class_1}, 5,
                    at::detail::createCPUGenerator(6));
  ASSERT_EQ(rows.sizes(), (std::vector<int64_t>{4, 5, 8, 8}));
  EXPECT_TRUE(rows[0].equal(rows[1]));  // same setting, same noise: same samples
  const at::Tensor mode = maps.mean.argmax(/*dim=*/0).to(at::kByte);
  for (int64_t n = 0; n < 5; ++n) EXPECT_TRUE(rows[2][n].equal(mode));
  // Only class 1's noise moves the decision; it does move it.
  EXPECT_FALSE(rows[3].equal(rows[2]));
  EXPECT_FALSE(rows[0].equal(rows[2]));
}

TEST(Sweep, ParsesKindsAndDefaultValues) {
  const Sweep temperature = Sweep::parse("temperature");
  EXPECT_EQ(temperature.values, (std::vector<double>{0, 0.5, 1, 1.5, 2}));
  EXPECT_EQ(temperature.label(1), "T=0.5");
  EXPECT_EQ(temperature.name(), "temperature");
  const Sweep weight = Sweep::parse("class:2", {-1, 0.5});
  EXPECT_EQ(weight.swept_class, 2);
  EXPECT_EQ(weight.label(0), "w2=-1");
  EXPECT_EQ(weight.name(), "class2");
  const SamplingControls controls = weight.apply({}, 1, 3);
  EXPECT_TRUE(controls.class_weights.equal(at::tensor({1.0f, 1.0f, 0.5f})));
  EXPECT_THAT(error_of([] { Sweep::parse("rank"); }),
              HasSubstr("'rank': expected 'temperature' or 'class:<c>'"));
  EXPECT_THAT(error_of([] { Sweep::parse("class:x"); }), HasSubstr("expected class:<c>"));
  EXPECT_THAT(error_of([] { Sweep::parse("temperature", {-1}); }),
              HasSubstr("temperatures must be >= 0"));
  EXPECT_THAT(error_of([&] { weight.apply({}, 0, 2); }),
              HasSubstr("sweep class:2: the predictions have classes 0 .. 1"));
}

class SampleFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
    root_ = fs::temp_directory_path() / ("ssn_sample_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "predictions");
  }
  void TearDown() override { fs::remove_all(root_); }

  // A predictions folder with one 2-D case (two classes, rank 2) and two annotations.
  PredictionMaps write_predictions(std::vector<int64_t> spatial = {10, 12}) {
    const PredictionMaps maps = random_maps(2, 2, spatial, 7);
    const fs::path dir = root_ / "predictions";
    io::write_float_image(dir / "c1_logit_mean.nii.gz", maps.mean);
    io::write_float_image(dir / "c1_cov_diag.nii.gz", maps.cov_diag);
    io::write_float_image(dir / "c1_cov_factor.nii.gz", maps.cov_factor);
    const std::string ext = spatial.size() == 2 ? ".png" : ".nii.gz";
    for (int j = 1; j <= 2; ++j) {
      io::write_label_image(dir / ("c1_l" + std::to_string(j) + ext),
                            at::randint(2, spatial, at::kLong) * 255);
    }
    io::write_text_file(dir / "prediction.csv",
                        "id,logit_mean,cov_diag,cov_factor,annotations\nc1,c1_logit_mean.nii.gz,"
                        "c1_cov_diag.nii.gz,c1_cov_factor.nii.gz,c1_l1" +
                            ext + ";c1_l2" + ext + "\n");
    return maps;
  }

  fs::path root_;
};

TEST_F(SampleFolder, WritesSamplesAnnotationsAndUncertaintyMaps) {
  const PredictionMaps maps = write_predictions();
  SampleFolderOptions options;
  options.num_samples = 3;
  options.controls.temperature = 0.0;
  EXPECT_EQ(write_samples(root_ / "predictions", root_ / "out", options), 1);
  const at::Tensor mode = maps.mean.argmax(/*dim=*/0);
  for (int i = 0; i < 3; ++i) {
    const at::Tensor sample =
        io::read_label_image(root_ / "out" / ("c1_s" + std::to_string(i) + ".png"));
    EXPECT_TRUE(sample.equal(mode * 255)) << "sample " << i;
  }
  EXPECT_TRUE(io::read_label_image(root_ / "out" / "c1_l2.png")
                  .equal(io::read_label_image(root_ / "predictions" / "c1_l2.png")));
  EXPECT_EQ(io::read_image(root_ / "out" / "c1_frequency.nii.gz").sizes(), maps.mean.sizes());
  EXPECT_EQ(io::read_image(root_ / "out" / "c1_entropy.nii.gz").sizes(), mode.sizes());
  EXPECT_TRUE(fs::is_regular_file(root_ / "out" / "c1_entropy.png"));
  EXPECT_FALSE(fs::exists(root_ / "out" / "c1_s3.png"));
}

TEST_F(SampleFolder, VolumesAreWrittenAsNifti) {
  write_predictions({3, 5, 4});
  SampleFolderOptions options;
  options.num_samples = 2;
  write_samples(root_ / "predictions", root_ / "out", options);
  EXPECT_EQ(io::read_label_image(root_ / "out" / "c1_s1.nii.gz").sizes(),
            (std::vector<int64_t>{3, 5, 4}));
  EXPECT_TRUE(fs::is_regular_file(root_ / "out" / "c1_l2.nii.gz"));
  EXPECT_FALSE(fs::exists(root_ / "out" / "c1_entropy.png"));
}

TEST_F(SampleFolder, SweepWritesOneFigurePerCase) {
  write_predictions();
  SampleFolderOptions options;
  options.num_samples = 4;
  options.sweep = Sweep::parse("class:1");
  write_samples(root_ / "predictions", root_ / "out", options);
  EXPECT_GT(fs::file_size(root_ / "out" / "c1_sweep_class1.png"), 100u);
  EXPECT_EQ(std::distance(fs::directory_iterator(root_ / "out"), fs::directory_iterator()), 1);
}

TEST(RenderSweep, OneRowPerSettingOneColumnPerSamplePlusTheImage) {
  const PredictionMaps maps = random_maps(2, 2, {10, 12}, 8);
  const at::Tensor figure = render_sweep(maps, at::rand({10, 12}), Sweep::parse("class:1"), {}, 4,
                                         at::detail::createCPUGenerator(0));
  // Tiles of 10 x 12 pixels are enlarged 128 / 12 = 10 times; 4 pixels between tiles.
  const int64_t gap = 4, tile_h = 100, tile_w = 120;
  EXPECT_EQ(figure.size(0), gap + 7 * (tile_h + gap));
  EXPECT_GT(figure.size(1), gap + 5 * (tile_w + gap));  // plus the row labels
  // Volumes show one slice.
  const PredictionMaps volume = random_maps(3, 1, {5, 8, 8}, 9);
  const at::Tensor slice_figure = render_sweep(volume, at::Tensor(), Sweep::parse("temperature"),
                                               {}, 2, at::detail::createCPUGenerator(0));
  EXPECT_EQ(slice_figure.size(0), gap + 5 * (128 + gap));
}

TEST_F(SampleFolder, BadControlsWriteNothing) {
  write_predictions();
  SampleFolderOptions options;
  options.controls.class_weights = at::ones({3});
  EXPECT_THAT(
      error_of([&] { write_samples(root_ / "predictions", root_ / "out", options); }),
      HasSubstr("class weights: 3 values, but " +
                (root_ / "predictions" / "c1_logit_mean.nii.gz").string() + " has C = 2 classes"));
  options.controls.class_weights = at::Tensor();
  options.controls.rank_weights = at::ones({5});
  EXPECT_THAT(error_of([&] { write_samples(root_ / "predictions", root_ / "out", options); }),
              HasSubstr("rank weights: 5 values"));
  EXPECT_FALSE(fs::exists(root_ / "out"));
  for (const auto& entry : fs::directory_iterator(root_)) {
    EXPECT_EQ(entry.path().filename(), "predictions") << "left behind: " << entry.path();
  }
}

TEST_F(SampleFolder, RefusesAFolderWithoutPredictionCsvAndANonEmptyOut) {
  SampleFolderOptions options;
  EXPECT_THAT(error_of([&] { write_samples(root_, root_ / "out", options); }),
              HasSubstr("has no prediction.csv"));
  write_predictions();
  fs::create_directories(root_ / "out");
  io::write_text_file(root_ / "out" / "keep.txt", "mine");
  EXPECT_THAT(error_of([&] { write_samples(root_ / "predictions", root_ / "out", options); }),
              HasSubstr("already exists and is not an empty folder"));
  EXPECT_TRUE(fs::is_regular_file(root_ / "out" / "keep.txt"));
}

}  // namespace
}  // namespace ssn::evaluation
