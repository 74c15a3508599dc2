#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "ssn/data/synthetic.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"

namespace ssn::data {
namespace {

namespace fs = std::filesystem;

double uniform(at::Generator& generator, double low, double high) {
  return low + (high - low) * at::rand({1}, generator, at::kDouble).item<double>();
}

// Smooth 3-D noise of unit deviation: white noise blurred by repeated box filters.
at::Tensor smooth_noise(const std::vector<int64_t>& shape, at::Generator& generator, int passes) {
  at::Tensor noise = at::randn({1, 1, shape[0], shape[1], shape[2]}, generator, at::kFloat);
  for (int i = 0; i < passes; ++i) {
    noise = at::avg_pool3d(noise, 5, 1, 2, /*ceil_mode=*/false, /*count_include_pad=*/false);
  }
  noise = noise[0][0];
  return (noise - noise.mean()) / noise.std();
}

// Distance-like field of an ellipsoid (< 1 inside), coordinates in voxels.
at::Tensor ellipsoid(const at::Tensor& z, const at::Tensor& y, const at::Tensor& x,
                     const std::vector<double>& centre, const std::vector<double>& radii) {
  return ((z - centre[0]) / radii[0]).square() + ((y - centre[1]) / radii[1]).square() +
         ((x - centre[2]) / radii[2]).square();
}

}  // namespace

SplitCounts write_brats_like(const fs::path& out, const BratsLikeOptions& options) {
  TORCH_CHECK(options.cases >= 3, "synth: --cases must be >= 3 (one per split), got ",
              options.cases);
  TORCH_CHECK(options.shape.size() == 3 && options.shape[0] >= 24 && options.shape[1] >= 24 &&
                  options.shape[2] >= 24,
              "synth: the volume shape must be 3 sizes >= 24");
  SplitCounts counts;
  io::write_folder_atomically(out, "synth: --out", [&](const fs::path& staging) {
    // A geometry a scanner could write: anisotropic voxels, an origin in the patient's frame and
    // the x and y axes flipped (LPS-style direction).
    io::Geometry geometry;
    geometry.spacing = {1.0, 1.2, 1.5};
    geometry.origin = {-40.5, 62.25, -18.0};
    geometry.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
    at::Generator generator = at::detail::createCPUGenerator(options.seed);
    const auto& shape = options.shape;
    const at::Tensor z = at::arange(shape[0], at::kFloat).reshape({-1, 1, 1}).expand(shape);
    const at::Tensor y = at::arange(shape[1], at::kFloat).reshape({1, -1, 1}).expand(shape);
    const at::Tensor x = at::arange(shape[2], at::kFloat).reshape({1, 1, -1}).expand(shape);
    const int64_t train = std::max<int64_t>(1, options.cases * 6 / 10);
    const int64_t valid = std::max<int64_t>(1, (options.cases - train) / 2);
    counts = {train, valid, options.cases - train - valid};
    std::ostringstream csv[3];
    for (auto& file : csv) file << "id,flair,t1,t1ce,t2,seg,sampling_mask\n";
    for (int64_t i = 0; i < options.cases; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "SYN3D-%04lld", static_cast<long long>(i));
      const std::string id = name;
      // The brain: an ellipsoid filling most of the volume with a wobbly surface.
      const std::vector<double> middle = {shape[0] / 2.0, shape[1] / 2.0, shape[2] / 2.0};
      const at::Tensor wobble = smooth_noise(shape, generator, 3);
      const at::Tensor brain =
          ellipsoid(z, y, x, middle, {shape[0] * 0.42, shape[1] * 0.42, shape[2] * 0.42}) +
              0.08 * wobble <
          1.0;
      // Nested tumour regions around a centre inside the brain: oedema (largest, irregular),
      // then the core, whose outer shell enhances and whose inside is necrotic.
      std::vector<double> centre(3), radii(3);
      for (int d = 0; d < 3; ++d) {
        centre[d] = middle[d] + uniform(generator, -0.15, 0.15) * shape[d];
        radii[d] = uniform(generator, 0.14, 0.22) * shape[d];
      }
      const at::Tensor shape_noise = smooth_noise(shape, generator, 2);
      const at::Tensor field = ellipsoid(z, y, x, centre, radii) + 0.25 * shape_noise;
      const double core = uniform(generator, 0.25, 0.45);
      const at::Tensor oedema = field.lt(1.0).logical_and(brain);
      const at::Tensor tumour_core = field.lt(core).logical_and(brain);
      const at::Tensor necrotic = field.lt(core * 0.45).logical_and(brain);
      at::Tensor seg = at::zeros(shape, at::kLong);
      seg.masked_fill_(oedema, 2);
      seg.masked_fill_(tumour_core, 3);
      seg.masked_fill_(necrotic, 1);
      // Channel contrasts (tissue, oedema, enhancing, necrotic), loosely as the MR sequences.
      const double contrast[4][4] = {{1.0, 2.2, 2.0, 1.2},   // FLAIR
                                     {1.0, 0.7, 0.8, 0.4},   // T1
                                     {1.0, 1.1, 2.6, 0.5},   // T1ce
                                     {1.0, 2.0, 1.6, 2.4}};  // T2
      const char* channel_names[4] = {"flair", "t1", "t1ce", "t2"};
      const fs::path folder = staging / id;
      fs::create_directories(folder);
      const at::Tensor bias = 1.0 + 0.1 * smooth_noise(shape, generator, 4);
      for (int c = 0; c < 4; ++c) {
        at::Tensor value = at::full(shape, contrast[c][0], at::kFloat);
        value.masked_fill_(seg.eq(2), contrast[c][1]);
        value.masked_fill_(seg.eq(3), contrast[c][2]);
        value.masked_fill_(seg.eq(1), contrast[c][3]);
        value = value * bias + 0.25 * at::randn(shape, generator, at::kFloat);
        value = value * brain;
        // z-score inside the brain, 0 outside (what preprocessing would give).
        const at::Tensor inside = value.masked_select(brain);
        value = ((value - inside.mean()) / inside.std()) * brain;
        io::write_float_image(folder / (id + "_" + channel_names[c] + ".nii.gz"), value, geometry);
      }
      io::write_label_image(folder / (id + "_seg.nii.gz"), seg, geometry);
      io::write_label_image(folder / (id + "_mask.nii.gz"), brain.to(at::kLong), geometry);
      const int split = i < train ? 0 : (i < train + valid ? 1 : 2);
      csv[split] << id;
      for (const char* channel : channel_names) {
        csv[split] << "," << id << "/" << id << "_" << channel << ".nii.gz";
      }
      csv[split] << "," << id << "/" << id << "_seg.nii.gz," << id << "/" << id << "_mask.nii.gz\n";
    }
    io::write_text_file(staging / "train.csv", csv[0].str());
    io::write_text_file(staging / "valid.csv", csv[1].str());
    io::write_text_file(staging / "test.csv", csv[2].str());
  });
  return counts;
}

}  // namespace ssn::data
