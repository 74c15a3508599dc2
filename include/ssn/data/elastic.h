#pragma once

// The reference's RandomElasticDeformationCoarsePerlinNoise (ssn/nifti/augmention.py of the SSN
// code): a smooth displacement field of 3-D Perlin noise, rounded to whole voxels, that moves the
// image, the target and the mask of a training volume alike (nearest neighbour, edges clamped).
//
// The reference draws the noise's gradient lattice from numpy.random.RandomState(843), so its
// field is a fixed function of noise_shape and period, the same in every run and in every one of
// its num_maps maps; each displacement component reads a window of that field at its own uniform
// offset. So does this one: the gradients come from the same Mersenne Twister stream.

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "ssn/data/volumes.h"

namespace ssn::data {

struct ElasticOptions {
  /// Probability that a case is deformed when it is loaded for training.
  double probability = 0.0;
  /// Cells of the noise lattice per axis (Perlin "res"): the field turns over noise_shape /
  /// period voxels.
  std::vector<int64_t> period = {5, 5, 5};
  /// Voxels of displacement per unit of noise (the noise's standard deviation is about 0.19).
  double alpha = 20.0;
  /// Shape of the field; every training volume must fit in it.
  std::vector<int64_t> noise_shape = {400, 400, 400};
};

/// numpy.random.RandomState(seed).random_sample(count): MT19937 seeded as numpy seeds with an
/// integer, two 32-bit draws per 53-bit double.
std::vector<double> numpy_random_sample(uint32_t seed, int64_t count);

/// The reference's 3-D Perlin noise over noise_shape (generated on the shape padded up to a
/// multiple of period, as it does), evaluated on a window: float64 [size...].
class CoarsePerlinNoise {
 public:
  CoarsePerlinNoise(std::vector<int64_t> noise_shape, std::vector<int64_t> period);
  /// Noise at voxels offset .. offset + size - 1 of each axis.
  at::Tensor window(const std::vector<int64_t>& offset, const std::vector<int64_t>& size) const;
  /// [period + 1 per axis, 3]: the unit gradients (sin phi cos theta, sin phi sin theta, cos phi).
  const at::Tensor& gradients() const { return gradients_; }

 private:
  // Noise on a window of at most a few million voxels (the caller cuts larger ones).
  at::Tensor evaluate(const std::vector<int64_t>& offset, const std::vector<int64_t>& size) const;

  std::vector<int64_t> noise_shape_, period_, cell_;  // cell_: voxels per lattice cell
  at::Tensor gradients_;
};

/// The rounded displacement alpha * noise, read by window. Small volumes evaluate their windows
/// on demand; once a volume's three windows would cover a quarter of the field, the whole field
/// is computed once and kept (int16: 2 bytes a voxel, 128 MB for the reference's 400^3), as the
/// reference keeps its maps.
class ElasticField {
 public:
  ElasticField(const ElasticOptions& options);
  /// int32 [size]: round(alpha * noise) at voxels offset .. offset + size - 1.
  at::Tensor displacement(const std::vector<int64_t>& offset, const std::vector<int64_t>& size);
  const ElasticOptions& options() const { return options_; }
  const CoarsePerlinNoise& noise() const { return noise_; }

 private:
  ElasticOptions options_;
  CoarsePerlinNoise noise_;
  at::Tensor whole_;  // int16 [noise_shape] once computed
};

/// Deforms `volume` in place with probability options.probability (one draw of `generator`):
/// for each spatial axis a, a window of the noise at a uniform offset (noise_shape - shape + 1
/// choices), times alpha, rounded, displaces axis a; every channel, the target and the mask read
/// the voxel at the clamped displaced position. Returns whether it deformed. A volume larger than
/// noise_shape is an error naming the case.
bool elastic_deform(Volume& volume, ElasticField& field, at::Generator& generator);

/// The integer displacement field [3, *shape] elastic_deform would apply with these window
/// offsets (one per component, each of 3 axes): for tests and the benchmark.
at::Tensor elastic_displacement(ElasticField& field,
                                const std::vector<std::vector<int64_t>>& offsets,
                                const std::vector<int64_t>& shape);

}  // namespace ssn::data
