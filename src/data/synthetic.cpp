#include "ssn/data/synthetic.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>
#include <vector>

#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"

namespace ssn::data {
namespace {

namespace fs = std::filesystem;

// Smooth noise: white noise blurred by repeated 5x5 box filters, scaled to unit deviation.
at::Tensor texture(int64_t side, at::Generator& generator) {
  at::Tensor noise = at::randn({1, 1, side, side}, generator, at::kFloat);
  for (int i = 0; i < 3; ++i)
    noise = at::avg_pool2d(noise, 5, 1, 2, /*ceil_mode=*/false,
                           /*count_include_pad=*/false);
  noise = noise[0][0];
  return (noise - noise.mean()) / noise.std();
}

double uniform(at::Generator& generator, double low, double high) {
  return low + (high - low) * at::rand({1}, generator, at::kDouble).item<double>();
}

}  // namespace

SplitCounts write_lidc_like(const fs::path& out, const LidcLikeOptions& options) {
  TORCH_CHECK(options.cases >= 3, "synth: --cases must be >= 3 (one per split), got ",
              options.cases);
  TORCH_CHECK(options.side >= 32, "synth: the image side must be >= 32, got ", options.side);
  SplitCounts counts;
  io::write_folder_atomically(out, "synth: --out", [&](const fs::path& staging) {
    at::Generator generator = at::detail::createCPUGenerator(options.seed);
    const int64_t side = options.side;
    const at::Tensor axis = at::arange(side, at::kFloat);
    const at::Tensor y = axis.view({side, 1}).expand({side, side});
    const at::Tensor x = axis.view({1, side}).expand({side, side});
    // Annotators' thresholds on the soft profile and their detection levels for faint lesions.
    const double thresholds[4] = {0.2, 0.4, 0.6, 0.8};
    const double detection[4] = {0.25, 0.45, 0.65, 0.85};

    for (int64_t k = 0; k < options.cases; ++k) {
      // Two slices per patient; patients go to train / val / test in 8 : 1 : 1.
      const int64_t patient = k / 2;
      const int64_t bucket = patient % 10;
      const std::string split = bucket < 8 ? "train" : (bucket == 8 ? "val" : "test");
      (split == "train" ? counts.train : split == "val" ? counts.val : counts.test) += 1;
      char patient_name[32], slice_name[32];
      std::snprintf(patient_name, sizeof(patient_name), "SYN-%04lld",
                    static_cast<long long>(patient));
      std::snprintf(slice_name, sizeof(slice_name), "z-%lld", static_cast<long long>(k % 2));

      const double cy = side / 2.0 + uniform(generator, -8, 8);
      const double cx = side / 2.0 + uniform(generator, -8, 8);
      const double radius = uniform(generator, 6, 22);
      const double softness = uniform(generator, 1.5, 4.5);
      const double wobble = uniform(generator, 0.0, 0.3);
      const double lobes = std::floor(uniform(generator, 2, 6));
      const double phase = uniform(generator, 0, 6.283);
      const double contrast = uniform(generator, 0.15, 1.0);
      const at::Tensor dy = y - cy, dx = x - cx;
      const at::Tensor distance = (dy * dy + dx * dx).sqrt();
      const at::Tensor angle = at::atan2(dy, dx);
      const at::Tensor boundary = radius * (1 + wobble * at::sin(lobes * angle + phase));
      const at::Tensor profile = at::sigmoid((boundary - distance) / softness);  // soft lesion

      const at::Tensor image = 0.35 * texture(side, generator) + 2.5 * contrast * profile +
                               0.1 * at::randn({side, side}, generator, at::kFloat);
      const at::Tensor grey =
          ((image - image.min()) / (image.max() - image.min()) * 255).round().to(at::kByte);
      const fs::path image_dir = staging / split / "images" / patient_name;
      const fs::path gt_dir = staging / split / "gt" / patient_name;
      fs::create_directories(image_dir);
      fs::create_directories(gt_dir);
      io::write_label_image(image_dir / (std::string(slice_name) + ".png"), grey);

      // Each case gets its own assignment of thresholds and detection levels to annotators; the
      // most sensitive annotator always marks the lesion.
      const at::Tensor order = at::randperm(4, generator, at::kLong);
      for (int64_t a = 0; a < 4; ++a) {
        const int64_t who = order[a].item<int64_t>();
        const bool marks = contrast >= detection[who] * 0.8 || who == 0;
        const at::Tensor mask = marks ? (profile > thresholds[who]).to(at::kLong) * 255
                                      : at::zeros({side, side}, at::kLong);
        io::write_label_image(
            gt_dir / (std::string(slice_name) + "_l" + std::to_string(a + 1) + ".png"), mask);
      }
    }
  });
  return counts;
}

}  // namespace ssn::data
