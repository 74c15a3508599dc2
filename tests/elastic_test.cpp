#include "ssn/data/elastic.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "golden.h"

namespace ssn::data {
namespace {

using ssn::testing::error_of;
using ::testing::HasSubstr;

// numpy.random.RandomState(843).rand(3) and RandomState(0).rand(2), printed by numpy 1.24.
TEST(NumpyRandomSample, ReproducesNumpysRandomState) {
  const std::vector<double> a = numpy_random_sample(843, 3);
  EXPECT_DOUBLE_EQ(a[0], 0.3384076944453358);
  EXPECT_DOUBLE_EQ(a[1], 0.11819640479050442);
  EXPECT_DOUBLE_EQ(a[2], 0.9099719292290381);
  const std::vector<double> b = numpy_random_sample(0, 2);
  EXPECT_DOUBLE_EQ(b[0], 0.5488135039273248);
  EXPECT_DOUBLE_EQ(b[1], 0.7151893663724195);
}

// Perlin noise is 0 on the lattice, and a window equals the same voxels of a larger window.
TEST(CoarsePerlinNoise, IsZeroOnTheLatticeAndWindowsAgree) {
  const CoarsePerlinNoise noise({40, 40, 40}, {4, 4, 4});  // cells of 10 voxels
  const at::Tensor whole = noise.window({0, 0, 0}, {40, 40, 40});
  EXPECT_EQ(whole
                .index({at::indexing::Slice(0, 40, 10), at::indexing::Slice(0, 40, 10),
                        at::indexing::Slice(0, 40, 10)})
                .abs()
                .max()
                .item<double>(),
            0.0);
  EXPECT_TRUE(at::allclose(noise.window({3, 17, 5}, {9, 4, 30}),
                           whole.slice(0, 3, 12).slice(1, 17, 21).slice(2, 5, 35)));
  EXPECT_GT(whole.std().item<double>(), 0.05);
  EXPECT_THAT(error_of([&] {
                noise.window({35, 0, 0}, {6, 1, 1});
              }),
              HasSubstr("outside the noise"));
}

// Every map of the volume is moved by the same field: channels that hold each voxel's own
// coordinates come back as the (clamped) source coordinates, and the target and the mask are
// the functions of those coordinates they were.
TEST(ElasticDeform, MovesImageTargetAndMaskTogether) {
  const std::vector<int64_t> shape = {20, 24, 22};
  Volume volume;
  volume.id = "case";
  const at::Tensor z = at::arange(20, at::kFloat).view({20, 1, 1}).expand(shape);
  const at::Tensor y = at::arange(24, at::kFloat).view({1, 24, 1}).expand(shape);
  const at::Tensor x = at::arange(22, at::kFloat).view({1, 1, 22}).expand(shape);
  volume.image = at::stack({z, y, x});
  volume.target = (z + y + x).to(at::kLong).remainder(4);
  volume.mask = x > 10;
  ElasticOptions options;
  options.probability = 1.0;
  options.period = {2, 2, 2};
  options.alpha = 20.0;
  options.noise_shape = {40, 40, 40};
  ElasticField field(options);
  at::Generator generator = at::detail::createCPUGenerator(3);
  Volume moved = volume;
  ASSERT_TRUE(elastic_deform(moved, field, generator));
  const at::Tensor source = moved.image;
  EXPECT_TRUE(moved.target.equal(source.sum(0).to(at::kLong).remainder(4)));
  EXPECT_TRUE(moved.mask.equal(source[2] > 10));
  EXPECT_GT((source - volume.image).abs().max().item<double>(), 0.0);  // it moved
  EXPECT_TRUE(source.ge(0).all().item<bool>());
  EXPECT_TRUE(source[0].le(19).all().item<bool>());

  options.probability = 0.0;
  ElasticField never(options);
  Volume still = volume;
  EXPECT_FALSE(elastic_deform(still, never, generator));
  EXPECT_TRUE(still.image.equal(volume.image));

  options.probability = 1.0;
  options.noise_shape = {20, 20, 40};
  ElasticField small(options);
  EXPECT_THAT(error_of([&] { elastic_deform(moved, small, generator); }),
              HasSubstr("case case has shape [20, 24, 22], larger than noise_shape [20, 20, 40]"));
}

// Once a volume is large against the field, the whole field is computed and cached; its windows
// equal those evaluated on demand.
TEST(ElasticField, TheCachedFieldEqualsWindowsOnDemand) {
  ElasticOptions options;
  options.noise_shape = {30, 28, 26};
  options.period = {3, 2, 5};
  options.alpha = 9.0;
  ElasticField small_first(options);
  const at::Tensor on_demand = small_first.displacement({4, 5, 6}, {3, 4, 5});
  ElasticField cached(options);
  cached.displacement({0, 0, 0}, {20, 20, 20});  // a window this large caches the field
  EXPECT_TRUE(cached.displacement({4, 5, 6}, {3, 4, 5}).equal(on_demand));
  EXPECT_TRUE(at::round(cached.noise().window({1, 2, 3}, {29, 26, 23}) * 9.0)
                  .to(at::kLong)
                  .equal(cached.displacement({1, 2, 3}, {29, 26, 23})));
}

// The reference's field (alpha 20, period 5 over 400 voxels) has a standard deviation of about
// 0.19 alpha = 3.8 voxels over the gradient draws; one window of a cell's size is near it.
TEST(ElasticDeform, DisplacementOfTheReferencesSettingsIsAFewVoxels) {
  ElasticField field{ElasticOptions()};
  const at::Tensor d =
      elastic_displacement(field, {{0, 0, 0}, {100, 100, 100}, {200, 37, 5}}, {80, 80, 80})
          .to(at::kDouble);
  for (int64_t a = 0; a < 3; ++a) {
    EXPECT_LT(d[a].abs().max().item<double>(), 20.0) << a;
    EXPECT_GT(d[a].std().item<double>(), 1.0) << a;
    EXPECT_LT(d[a].std().item<double>(), 8.0) << a;
  }
}

}  // namespace
}  // namespace ssn::data
