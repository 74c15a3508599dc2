#include "ssn/data/elastic.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

namespace ssn::data {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// Perlin's fade 6t^5 - 15t^4 + 10t^3.
at::Tensor fade(const at::Tensor& t) { return t * t * t * (t * (t * 6 - 15) + 10); }

}  // namespace

std::vector<double> numpy_random_sample(uint32_t seed, int64_t count) {
  std::mt19937 twister(seed);  // init_genrand, as numpy seeds MT19937 with a 32-bit integer
  std::vector<double> values(static_cast<size_t>(count));
  for (auto& v : values) {
    const uint32_t a = twister() >> 5, b = twister() >> 6;
    v = (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) / 9007199254740992.0;
  }
  return values;
}

CoarsePerlinNoise::CoarsePerlinNoise(std::vector<int64_t> noise_shape, std::vector<int64_t> period)
    : noise_shape_(std::move(noise_shape)), period_(std::move(period)) {
  TORCH_CHECK(noise_shape_.size() == 3 && period_.size() == 3,
              "elastic deformation: noise_shape and period need 3 values each (volumes), got ",
              shape_text(noise_shape_), " and ", shape_text(period_));
  int64_t lattice = 1;
  for (size_t a = 0; a < 3; ++a) {
    TORCH_CHECK(noise_shape_[a] >= 1 && period_[a] >= 1,
                "elastic deformation: noise_shape and period must be >= 1, got ",
                shape_text(noise_shape_), " and ", shape_text(period_));
    // The reference pads each axis up to a multiple of the period (one more cell for period 1).
    const int64_t c = period_[a], s = noise_shape_[a];
    const int64_t padded = (s / c + (s % c != 0) + (c == 1)) * c;
    cell_.push_back(padded / c);
    lattice *= c + 1;
  }
  // theta first, then phi, each a C-ordered (p0 + 1) x (p1 + 1) x (p2 + 1) array of the stream.
  const std::vector<double> draws = numpy_random_sample(843, 2 * lattice);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor theta =
      at::tensor(std::vector<double>(draws.begin(), draws.begin() + lattice), options) * (2 * M_PI);
  const at::Tensor phi =
      at::tensor(std::vector<double>(draws.begin() + lattice, draws.end()), options) * (2 * M_PI);
  gradients_ = at::stack({phi.sin() * theta.cos(), phi.sin() * theta.sin(), phi.cos()}, 1)
                   .view({period_[0] + 1, period_[1] + 1, period_[2] + 1, 3});
}

at::Tensor CoarsePerlinNoise::window(const std::vector<int64_t>& offset,
                                     const std::vector<int64_t>& size) const {
  TORCH_CHECK(offset.size() == 3 && size.size() == 3, "CoarsePerlinNoise: 3 axes expected");
  for (size_t a = 0; a < 3; ++a) {
    TORCH_CHECK(offset[a] >= 0 && size[a] >= 1 && offset[a] + size[a] <= noise_shape_[a],
                "CoarsePerlinNoise: window ", shape_text(offset), " + ", shape_text(size),
                " outside the noise ", shape_text(noise_shape_));
  }
  // Slabs along axis 0 of about a million voxels bound the temporaries.
  const int64_t slab = std::max<int64_t>(1, (int64_t{1} << 20) / (size[1] * size[2]));
  if (size[0] <= slab) return evaluate(offset, size);
  at::Tensor out = at::empty(size, at::kDouble);
  for (int64_t first = 0; first < size[0]; first += slab) {
    const int64_t n = std::min(slab, size[0] - first);
    out.narrow(0, first, n)
        .copy_(evaluate({offset[0] + first, offset[1], offset[2]}, {n, size[1], size[2]}));
  }
  return out;
}

at::Tensor CoarsePerlinNoise::evaluate(const std::vector<int64_t>& offset,
                                       const std::vector<int64_t>& size) const {
  // Per axis: the lattice cell of each voxel and its position in the cell, in [0, 1).
  std::vector<at::Tensor> cell(3), t(3), f(3);
  for (size_t a = 0; a < 3; ++a) {
    const at::Tensor v = at::arange(offset[a], offset[a] + size[a], at::kLong);
    std::vector<int64_t> shape = {1, 1, 1};
    shape[a] = size[a];
    cell[a] = v.div(cell_[a], "floor").view(shape);
    t[a] = (v.remainder(cell_[a]).to(at::kDouble) / static_cast<double>(cell_[a])).view(shape);
    f[a] = fade(t[a]);
  }
  // The dot product of each corner's gradient with the offset from that corner, then the blend
  // along axis 0, 1 and 2 in turn (weights fade(t) towards the far corner).
  const auto corner = [&](int64_t d0, int64_t d1, int64_t d2) {
    at::Tensor dot;
    for (int64_t k = 0; k < 3; ++k) {
      const at::Tensor term =
          gradients_.select(3, k).index({cell[0] + d0, cell[1] + d1, cell[2] + d2}) *
          (t[static_cast<size_t>(k)] - (k == 0   ? d0
                                        : k == 1 ? d1
                                                 : d2));
      dot = dot.defined() ? dot + term : term;
    }
    return dot;
  };
  const auto lerp = [](const at::Tensor& a, const at::Tensor& b, const at::Tensor& w) {
    return a * (1 - w) + b * w;
  };
  const at::Tensor n0 = lerp(lerp(corner(0, 0, 0), corner(1, 0, 0), f[0]),
                             lerp(corner(0, 1, 0), corner(1, 1, 0), f[0]), f[1]);
  const at::Tensor n1 = lerp(lerp(corner(0, 0, 1), corner(1, 0, 1), f[0]),
                             lerp(corner(0, 1, 1), corner(1, 1, 1), f[0]), f[1]);
  return lerp(n0, n1, f[2]).expand(size).contiguous();
}

ElasticField::ElasticField(const ElasticOptions& options)
    : options_(options), noise_(options.noise_shape, options.period) {
  TORCH_CHECK(std::isfinite(options.alpha) && std::fabs(options.alpha) <= 10000,
              "elastic deformation: alpha must be finite and at most 10000, got ", options.alpha);
}

at::Tensor ElasticField::displacement(const std::vector<int64_t>& offset,
                                      const std::vector<int64_t>& size) {
  int64_t window = 1, whole = 1;
  for (size_t a = 0; a < 3; ++a) {
    window *= size[a];
    whole *= options_.noise_shape[a];
  }
  if (!whole_.defined() && 3 * window * 4 >= whole) {
    // |noise| < 1, so the rounded field fits int16 for |alpha| <= 10000.
    const auto& shape = options_.noise_shape;
    whole_ = at::empty(shape, at::kShort);
    const int64_t slab = std::max<int64_t>(1, (int64_t{1} << 20) / (shape[1] * shape[2]));
    for (int64_t first = 0; first < shape[0]; first += slab) {
      const int64_t n = std::min(slab, shape[0] - first);
      whole_.narrow(0, first, n)
          .copy_(at::round(noise_.window({first, 0, 0}, {n, shape[1], shape[2]}) * options_.alpha));
    }
  }
  if (!whole_.defined())
    return at::round(noise_.window(offset, size) * options_.alpha).to(at::kInt);
  for (size_t a = 0; a < 3; ++a) {
    TORCH_CHECK(offset[a] >= 0 && offset[a] + size[a] <= options_.noise_shape[a],
                "ElasticField: window ", shape_text(offset), " + ", shape_text(size),
                " outside the noise ", shape_text(options_.noise_shape));
  }
  return whole_.slice(0, offset[0], offset[0] + size[0])
      .slice(1, offset[1], offset[1] + size[1])
      .slice(2, offset[2], offset[2] + size[2])
      .to(at::kInt);
}

at::Tensor elastic_displacement(ElasticField& field,
                                const std::vector<std::vector<int64_t>>& offsets,
                                const std::vector<int64_t>& shape) {
  std::vector<at::Tensor> components;
  for (size_t a = 0; a < 3; ++a) components.push_back(field.displacement(offsets[a], shape));
  return at::stack(components);
}

bool elastic_deform(Volume& volume, ElasticField& field, at::Generator& generator) {
  const ElasticOptions& options = field.options();
  if (!(at::rand({1}, generator, at::kDouble).item<double>() < options.probability)) return false;
  TORCH_CHECK(volume.image.dim() == 4, "elastic deformation: case ", volume.id,
              " is not a volume of 3 spatial axes");
  const std::vector<int64_t> shape(volume.image.sizes().begin() + 1, volume.image.sizes().end());
  for (size_t a = 0; a < 3; ++a) {
    TORCH_CHECK(shape[a] <= options.noise_shape[a], "elastic deformation: case ", volume.id,
                " has shape ", shape_text(shape), ", larger than noise_shape ",
                shape_text(options.noise_shape), " (the field must cover the volume)");
  }
  std::vector<std::vector<int64_t>> offsets(3);
  for (auto& offset : offsets) {
    for (size_t a = 0; a < 3; ++a) {
      offset.push_back(at::randint(options.noise_shape[a] - shape[a] + 1, {1}, generator, at::kLong)
                           .item<int64_t>());
    }
  }
  const at::Tensor d = elastic_displacement(field, offsets, shape);
  // The voxel each output voxel reads, clamped to the volume, as one flat index.
  // int32: a volume of up to 2^31 voxels (the reference's are 9 million).
  TORCH_CHECK(volume.image[0].numel() < (int64_t{1} << 31), "elastic deformation: case ", volume.id,
              " has too many voxels");
  at::Tensor index = at::zeros(shape, at::kInt);
  int64_t stride = 1;
  for (int64_t a = 2; a >= 0; --a) {
    std::vector<int64_t> view = {1, 1, 1};
    view[static_cast<size_t>(a)] = shape[static_cast<size_t>(a)];
    const at::Tensor position = at::arange(shape[static_cast<size_t>(a)], at::kInt).view(view);
    index += (position + d[a]).clamp(0, shape[static_cast<size_t>(a)] - 1) * stride;
    stride *= shape[static_cast<size_t>(a)];
  }
  const at::Tensor flat = index.flatten();
  const auto warp = [&](const at::Tensor& map) {
    return map.reshape({-1}).index_select(0, flat).view(map.sizes());
  };
  std::vector<at::Tensor> channels;
  for (int64_t c = 0; c < volume.image.size(0); ++c) channels.push_back(warp(volume.image[c]));
  volume.image = at::stack(channels);
  if (volume.target.defined()) volume.target = warp(volume.target);
  if (volume.mask.defined()) volume.mask = warp(volume.mask);
  return true;
}

}  // namespace ssn::data
