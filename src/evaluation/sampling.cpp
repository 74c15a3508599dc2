#include "ssn/evaluation/sampling.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ssn/draw/pictures.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"

namespace ssn::evaluation {
namespace fs = std::filesystem;
namespace {

LowRankNormal distribution_of(const PredictionMaps& maps) {
  return distribution_from_maps(maps.mean.unsqueeze(0).to(at::kFloat),
                                maps.cov_diag.unsqueeze(0).to(at::kFloat),
                                maps.cov_factor.unsqueeze(0).to(at::kFloat));
}

std::string format_value(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// The two-class convention of the predictions folder: masks are 0/255.
at::Tensor stored_labels(const at::Tensor& labels, int64_t num_classes) {
  return num_classes == 2 ? labels * 255 : labels;
}

// Samples per pass of draw_samples: m x C x S stays within this many values (seven samples of a
// 4-class BraTS volume; all of them for a LIDC crop). Each pass reads the factor once; its memory
// is the m label maps (m x S bytes).
constexpr int64_t kDrawChunkValues = int64_t{1} << 28;

void check_controls(const SamplingControls& controls, int64_t classes, int64_t rank) {
  TORCH_CHECK(std::isfinite(controls.temperature) && controls.temperature >= 0,
              "sampling: temperature must be finite and >= 0, got ", controls.temperature);
  if (controls.class_weights.defined()) {
    TORCH_CHECK(controls.class_weights.dim() == 1 && controls.class_weights.size(0) == classes,
                "sampling: class_weights must have C = ", classes, " entries, got shape ",
                controls.class_weights.sizes());
    TORCH_CHECK(at::isfinite(controls.class_weights).all().item<bool>(),
                "sampling: class_weights must be finite");
  }
  if (controls.rank_weights.defined()) {
    TORCH_CHECK(controls.rank_weights.dim() == 1 && controls.rank_weights.size(0) == rank,
                "sampling: rank_weights must have R = ", rank, " entries, got shape ",
                controls.rank_weights.sizes());
    TORCH_CHECK(at::isfinite(controls.rank_weights).all().item<bool>(),
                "sampling: rank_weights must be finite");
  }
}

// Pixels per tile of the fused pass; the diagonal noise of tile t comes from a generator of its own
// (block_seed(noise seed, t)), m x C x kTile values, of which the first n pixels are used.
constexpr int64_t kTile = 2048;

// The seed of block `b` of a draw seeded `base`: splitmix64 of base + b, well spread for
// neighbouring blocks.
uint64_t block_seed(uint64_t base, int64_t b) {
  uint64_t z = base + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// One tile of n pixels for m samples: for each class, sqrt(D) once, then per sample the logits in
// vectorised passes, then the running maximum over the classes (index: class numbers as floats).
// Pointers are at the tile's first pixel; the noise of sample j, class c is at
// noise + j * noise_j + c * noise_c. Built for AVX2 and for the baseline, picked when loaded.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target_clones("avx2", "default")))
#endif
void tile_argmax(int64_t n, int64_t classes, int64_t m, int64_t rank, int64_t pixels,
                 const float* diag_p, const float* mean_p, const float* factor_p,
                 const float* low_p, const float* noise, int64_t noise_j, int64_t noise_c,
                 const float* scale, float* __restrict sd, float* __restrict l,
                 float* best_buffer, float* index_buffer, int64_t stride) {
  for (int64_t c = 0; c < classes; ++c) {
    const float* __restrict d = diag_p + c * pixels;
    for (int64_t i = 0; i < n; ++i) sd[i] = std::sqrt(d[i]);
    const float k = scale[c];
    const float label = static_cast<float>(c);
    const float* __restrict mu = mean_p + c * pixels;
    for (int64_t j = 0; j < m; ++j) {
      const float* __restrict e = noise + j * noise_j + c * noise_c;
      for (int64_t i = 0; i < n; ++i) l[i] = sd[i] * e[i];
      for (int64_t r = 0; r < rank; ++r) {
        const float w = low_p[j * rank + r];
        const float* __restrict f = factor_p + (r * classes + c) * pixels;  // channel r*C + c
        for (int64_t i = 0; i < n; ++i) l[i] += w * f[i];
      }
      float* __restrict best = best_buffer + j * stride;
      float* __restrict index = index_buffer + j * stride;
      if (c == 0) {
        for (int64_t i = 0; i < n; ++i) {
          best[i] = mu[i] + k * l[i];
          index[i] = 0.0f;
        }
      } else {
        for (int64_t i = 0; i < n; ++i) {
          const float v = mu[i] + k * l[i];
          const float b = best[i];
          // strict: the first maximum wins. Arithmetic selects, so that the loop vectorises.
          const float up = v > b ? 1.0f : 0.0f;
          index[i] += up * (label - index[i]);
          best[i] = v > b ? v : b;
        }
      }
    }
  }
}

// sample_labels, with the diagonal noise either given (eps_D) or, when eps_D is undefined, drawn
// tile by tile inside the pass from generators seeded by block_seed(noise_seed, tile): no noise
// tensor of the volume exists, and the values do not depend on the thread count.
at::Tensor labels_kernel(const PredictionMaps& maps, const at::Tensor& eps_W,
                         const at::Tensor& eps_D, uint64_t noise_seed,
                         const SamplingControls& controls, const at::Tensor& counts) {
  const int64_t classes = maps.mean.size(0);
  TORCH_CHECK(classes >= 1 && classes <= 256, "sampling: expected 1 to 256 classes, got ", classes);
  const int64_t pixels = maps.mean.numel() / classes;
  TORCH_CHECK(maps.cov_diag.sizes() == maps.mean.sizes() &&
                  maps.cov_factor.size(0) % classes == 0 &&
                  maps.cov_factor.numel() == maps.cov_factor.size(0) * pixels,
              "sampling: the maps disagree: mean ", maps.mean.sizes(), ", cov_diag ",
              maps.cov_diag.sizes(), ", cov_factor ", maps.cov_factor.sizes());
  const int64_t rank = maps.cov_factor.size(0) / classes;
  const int64_t m = eps_W.size(0);
  const bool given = eps_D.defined();
  TORCH_CHECK(
      eps_W.dim() == 2 && eps_W.size(1) == rank &&
          (!given || (eps_D.dim() == 2 && eps_D.size(0) == m && eps_D.size(1) == classes * pixels)),
      "sampling: the noise must be eps_W [m, ", rank, "] and eps_D [m, ", classes * pixels,
      "], got ", eps_W.sizes(), " and ", eps_D.sizes());
  check_controls(controls, classes, rank);
  const at::Tensor mean = maps.mean.to(at::kFloat).contiguous();
  const at::Tensor diag = maps.cov_diag.to(at::kFloat).contiguous();
  const at::Tensor factor = maps.cov_factor.to(at::kFloat).contiguous();
  // The low-rank noise with the rank weights, and each class's scale T * w_c.
  at::Tensor low = eps_W.to(at::kFloat).contiguous();
  if (controls.rank_weights.defined()) low = low * controls.rank_weights.to(at::kFloat);
  low = low.contiguous();
  std::vector<float> scale(static_cast<size_t>(classes), static_cast<float>(controls.temperature));
  if (controls.class_weights.defined()) {
    const at::Tensor w = controls.class_weights.to(at::kDouble).contiguous();
    for (int64_t c = 0; c < classes; ++c) {
      scale[static_cast<size_t>(c)] =
          static_cast<float>(controls.temperature * w.data_ptr<double>()[c]);
    }
  }
  const at::Tensor noise = given ? eps_D.to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor labels = at::empty({m, pixels}, at::kByte);
  const float* mean_p = mean.data_ptr<float>();
  const float* diag_p = diag.data_ptr<float>();
  const float* factor_p = factor.data_ptr<float>();
  const float* low_p = low.data_ptr<float>();
  const float* noise_p = given ? noise.data_ptr<float>() : nullptr;
  uint8_t* labels_p = labels.data_ptr<uint8_t>();
  int32_t* counts_p = nullptr;
  if (counts.defined()) {
    TORCH_CHECK(counts.scalar_type() == at::kInt && counts.is_contiguous() &&
                    counts.numel() == classes * pixels,
                "sampling: counts must be a contiguous int32 [", classes, ", ", pixels, "] tensor");
    counts_p = counts.data_ptr<int32_t>();
  }
  // Tile by tile (the factor's rows of a tile stay in cache for the chunk's other samples): for
  // each class, sqrt(D) once, then per sample the logits in vectorised passes over the tile, then
  // the running maximum over the classes.
  at::parallel_for(0, (pixels + kTile - 1) / kTile, 1, [&](int64_t first, int64_t last) {
    std::vector<float> sd_buffer(kTile), logit_buffer(kTile), best_buffer(m * kTile),
        index_buffer(m * kTile);  // class indices as floats: a branch-free select
    std::vector<float> tile_noise(given ? 0 : m * classes * kTile);
    float* __restrict sd = sd_buffer.data();
    float* __restrict l = logit_buffer.data();
    for (int64_t tile = first; tile < last; ++tile) {
      const int64_t s0 = tile * kTile;
      const int64_t n = std::min(kTile, pixels - s0);
      if (!given) {  // [m, C, kTile]: this tile's noise, from this tile's own generator
        at::Generator generator = at::detail::createCPUGenerator(block_seed(noise_seed, tile));
        at::from_blob(tile_noise.data(), {static_cast<int64_t>(tile_noise.size())}, at::kFloat)
            .normal_(0.0, 1.0, generator);
      }
      if (given) {
        tile_argmax(n, classes, m, rank, pixels, diag_p + s0, mean_p + s0, factor_p + s0, low_p,
                    noise_p + s0, classes * pixels, pixels, scale.data(), sd, l, best_buffer.data(),
                    index_buffer.data(), kTile);
      } else {
        tile_argmax(n, classes, m, rank, pixels, diag_p + s0, mean_p + s0, factor_p + s0, low_p,
                    tile_noise.data(), classes * kTile, kTile, scale.data(), sd, l,
                    best_buffer.data(), index_buffer.data(), kTile);
      }
      for (int64_t j = 0; j < m; ++j) {
        const float* index = index_buffer.data() + j * kTile;
        uint8_t* out = labels_p + j * pixels + s0;
        for (int64_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(index[i]);
        if (counts_p) {  // this tile's pixels belong to this thread alone
          for (int64_t i = 0; i < n; ++i) ++counts_p[out[i] * pixels + s0 + i];
        }
      }
    }
  });
  std::vector<int64_t> shape = {m};
  shape.insert(shape.end(), maps.mean.sizes().begin() + 1, maps.mean.sizes().end());
  return labels.reshape(shape);
}

// The diagonal noise that labels_kernel draws inside its pass for `noise_seed`, as a tensor
// [m, C * S] (class-major, as eps_D): tile by tile from the same generators, so a device that
// samples from it draws the samples of the CPU's fused pass.
at::Tensor diagonal_noise(uint64_t noise_seed, int64_t m, int64_t classes, int64_t pixels) {
  at::Tensor noise = at::empty({m, classes, pixels}, at::kFloat);
  float* out = noise.data_ptr<float>();
  at::parallel_for(0, (pixels + kTile - 1) / kTile, 1, [&](int64_t first, int64_t last) {
    std::vector<float> tile_noise(static_cast<size_t>(m * classes * kTile));
    for (int64_t tile = first; tile < last; ++tile) {
      const int64_t s0 = tile * kTile;
      const int64_t n = std::min(kTile, pixels - s0);
      at::Generator generator = at::detail::createCPUGenerator(block_seed(noise_seed, tile));
      at::from_blob(tile_noise.data(), {static_cast<int64_t>(tile_noise.size())}, at::kFloat)
          .normal_(0.0, 1.0, generator);
      for (int64_t row = 0; row < m * classes; ++row) {
        std::copy_n(tile_noise.data() + row * kTile, n, out + row * pixels + s0);
      }
    }
  });
  return noise.view({m, classes * pixels});
}

// draw_samples' chunk on a device: the noise of the CPU's pass (eps_W as given, the diagonal
// noise rebuilt by diagonal_noise), the logits and their argmax on the device; adds the labels to
// `counts` (on the device) and returns them [m, S] uint8 on the device.
at::Tensor device_labels(const LowRankNormal& distribution, const at::Tensor& eps_W,
                         uint64_t noise_seed, const SamplingControls& controls,
                         at::Tensor& counts) {
  const at::Device device = distribution.loc().device();
  const int64_t classes = counts.size(0);
  const int64_t pixels = counts.size(1);
  const int64_t m = eps_W.size(0);
  const at::Tensor eps_D = diagonal_noise(noise_seed, m, classes, pixels);
  const at::Tensor logits = distribution
                                .rsample_from_noise(eps_W.to(device).unsqueeze(1),
                                                    eps_D.to(device).unsqueeze(1), controls)
                                .reshape({m, classes, pixels});
  const at::Tensor labels = class_argmax(logits, /*dim=*/1);  // [m, S]
  for (int64_t c = 0; c < classes; ++c) counts[c].add_(labels.eq(c).sum(/*dim=*/0).to(at::kInt));
  return labels;
}

}  // namespace

at::Tensor sample_labels(const PredictionMaps& maps, const at::Tensor& eps_W,
                         const at::Tensor& eps_D, const SamplingControls& controls,
                         const at::Tensor& counts) {
  TORCH_CHECK(eps_D.defined(), "sample_labels: eps_D is required");
  return labels_kernel(maps, eps_W, eps_D, 0, controls, counts);
}

namespace {
// draw_samples with the fused CPU pass (`fused`) or through LowRankNormal on `device`.
SampleStatistics draw(const PredictionMaps& maps, int64_t num_samples,
                      const SamplingControls& controls, at::Generator generator,
                      const SampleSink& sink, at::Device device, bool fused) {
  TORCH_CHECK(num_samples >= 1, "the number of samples must be >= 1, got ", num_samples);
  const int64_t classes = maps.mean.size(0);
  const int64_t pixels = maps.mean.numel() / classes;
  const int64_t rank = maps.cov_factor.size(0) / std::max<int64_t>(classes, 1);
  const std::vector<int64_t> spatial(maps.mean.sizes().begin() + 1, maps.mean.sizes().end());
  TORCH_CHECK(
      at::isfinite(maps.cov_diag).all().item<bool>() && maps.cov_diag.gt(0).all().item<bool>(),
      "sampling: cov_diag must be > 0 and finite");
  check_controls(controls, classes, rank);
  TORCH_CHECK(!fused || device.is_cpu(), "sampling: the fused pass runs on the CPU only");
  // Unfused: the maps, the controls and the class counts live on the device.
  const std::optional<LowRankNormal> distribution =
      fused ? std::nullopt
            : std::optional<LowRankNormal>(distribution_of(
                  {maps.mean.to(device), maps.cov_diag.to(device), maps.cov_factor.to(device)}));
  const SamplingControls device_controls = fused ? controls : controls.to(device);
  at::Tensor counts = at::zeros({classes, pixels}, at::TensorOptions(device).dtype(at::kInt));
  const int64_t chunk =
      std::max<int64_t>(1, kDrawChunkValues / std::max<int64_t>(1, maps.mean.numel()));
  for (int64_t start = 0; start < num_samples; start += chunk) {
    const int64_t m = std::min(chunk, num_samples - start);
    const at::Tensor eps_W = at::randn({m, rank}, generator, at::TensorOptions(at::kFloat));
    uint64_t noise_seed = 0;  // the diagonal noise, drawn inside the pass
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      noise_seed = at::check_generator<at::CPUGeneratorImpl>(generator)->random64();
    }
    const at::Tensor labels =
        fused
            ? labels_kernel(maps, eps_W, at::Tensor(), noise_seed, controls, counts)
                  .reshape({m, pixels})
            : device_labels(*distribution, eps_W, noise_seed, device_controls, counts).to(at::kCPU);
    if (sink) {
      for (int64_t i = 0; i < m; ++i) sink(start + i, labels[i].reshape(spatial));
    }
  }
  const at::Tensor frequency = counts.to(at::kCPU).to(at::kFloat) / static_cast<float>(num_samples);
  // 0 log 0 = 0: where a class never occurs it contributes nothing. Class by class over
  // contiguous rows (ATen's reduction over the short class axis of [C, S] is slow for volumes).
  at::Tensor entropy = at::zeros({pixels}, at::kFloat);
  for (int64_t c = 0; c < classes; ++c) {
    const at::Tensor f = frequency[c];
    entropy.sub_(at::where(f > 0, f * f.log(), at::zeros_like(f)));
  }
  std::vector<int64_t> map_shape(maps.mean.sizes().begin(), maps.mean.sizes().end());
  return {frequency.reshape(map_shape), entropy.reshape(spatial)};
}
}  // namespace

SampleStatistics draw_samples(const PredictionMaps& maps, int64_t num_samples,
                              const SamplingControls& controls, at::Generator generator,
                              const SampleSink& sink, at::Device device) {
  return draw(maps, num_samples, controls, generator, sink, device, device.is_cpu());
}

SampleStatistics draw_samples_unfused(const PredictionMaps& maps, int64_t num_samples,
                                      const SamplingControls& controls, at::Generator generator,
                                      const SampleSink& sink, at::Device device) {
  return draw(maps, num_samples, controls, generator, sink, device, /*fused=*/false);
}

at::Tensor sweep_samples(const PredictionMaps& maps, const std::vector<SamplingControls>& settings,
                         int64_t num_samples, at::Generator generator) {
  TORCH_CHECK(num_samples >= 1, "the number of samples must be >= 1, got ", num_samples);
  TORCH_CHECK(!settings.empty(), "a sweep needs at least one setting");
  const LowRankNormal distribution = distribution_of(maps);
  const int64_t classes = maps.mean.size(0);
  const std::vector<int64_t> spatial(maps.mean.sizes().begin() + 1, maps.mean.sizes().end());
  std::vector<int64_t> shape = {static_cast<int64_t>(settings.size()), num_samples};
  shape.insert(shape.end(), spatial.begin(), spatial.end());
  at::Tensor labels = at::empty(shape, at::kByte);
  // One sample's noise at a time: a sweep over full volumes never holds more than one logit map
  // per setting.
  for (int64_t n = 0; n < num_samples; ++n) {
    const at::Tensor eps_W =
        at::randn({1, 1, distribution.rank()}, generator, at::TensorOptions(at::kFloat));
    const at::Tensor eps_D =
        at::randn({1, 1, distribution.event_size()}, generator, at::TensorOptions(at::kFloat));
    for (size_t s = 0; s < settings.size(); ++s) {
      labels[static_cast<int64_t>(s)][n].copy_(
          distribution.rsample_from_noise(eps_W, eps_D, settings[s])
              .reshape({classes, -1})
              .argmax(/*dim=*/0)
              .reshape(spatial));
    }
  }
  return labels;
}

Sweep Sweep::parse(const std::string& text, std::vector<double> values) {
  Sweep sweep;
  if (text == "temperature") {
    sweep.kind = Kind::kTemperature;
    if (values.empty()) values = {0.0, 0.5, 1.0, 1.5, 2.0};
  } else if (text.rfind("class:", 0) == 0) {
    sweep.kind = Kind::kClassWeight;
    const std::string index = text.substr(6);
    TORCH_CHECK(!index.empty() && index.find_first_not_of("0123456789") == std::string::npos, "'",
                text, "': expected class:<c> with a class index c, e.g. class:1");
    sweep.swept_class = std::stoll(index);
    if (values.empty()) values = {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0};
  } else {
    TORCH_CHECK(false, "'", text, "': expected 'temperature' or 'class:<c>'");
  }
  for (double v : values) {
    TORCH_CHECK(std::isfinite(v), "sweep values: expected finite numbers, got ", v);
    TORCH_CHECK(sweep.kind != Kind::kTemperature || v >= 0,
                "sweep values: temperatures must be >= 0, got ", v);
  }
  sweep.values = std::move(values);
  return sweep;
}

std::string Sweep::name() const {
  return kind == Kind::kTemperature ? "temperature" : "class" + std::to_string(swept_class);
}

std::string Sweep::label(size_t i) const {
  return (kind == Kind::kTemperature ? "T=" : "w" + std::to_string(swept_class) + "=") +
         format_value(values.at(i));
}

SamplingControls Sweep::apply(const SamplingControls& base, size_t i, int64_t num_classes) const {
  SamplingControls controls = base;
  if (kind == Kind::kTemperature) {
    controls.temperature = values.at(i);
  } else {
    TORCH_CHECK(swept_class < num_classes, "sweep class:", swept_class,
                ": the predictions have classes 0 .. ", num_classes - 1);
    at::Tensor weights = base.class_weights.defined() ? base.class_weights.clone()
                                                      : at::ones({num_classes}, at::kFloat);
    weights[swept_class] = values.at(i);
    controls.class_weights = weights;
  }
  return controls;
}

at::Tensor render_sweep(const PredictionMaps& maps, const at::Tensor& image, const Sweep& sweep,
                        const SamplingControls& base, int64_t num_samples,
                        at::Generator generator) {
  const int64_t classes = maps.mean.size(0);
  std::vector<SamplingControls> settings;
  std::vector<std::string> labels;
  for (size_t i = 0; i < sweep.values.size(); ++i) {
    settings.push_back(sweep.apply(base, i, classes));
    labels.push_back(sweep.label(i));
  }
  at::Tensor samples = sweep_samples(maps, settings, num_samples, generator);
  at::Tensor picture_source = image;
  if (samples.dim() == 5) {  // [settings, N, D, H, W]: show one slice
    const int64_t slice = draw::representative_slice(maps.mean.argmax(/*dim=*/0));
    samples = samples.select(2, slice);
    if (picture_source.defined()) picture_source = picture_source.select(0, slice);
  }
  const at::Tensor background = picture_source.defined()
                                    ? draw::grey_picture(picture_source)
                                    : draw::black_picture(samples.size(2), samples.size(3));
  // Small maps are enlarged so that a figure is readable; label maps stay crisp.
  const int64_t factor = std::max<int64_t>(1, 128 / std::max(samples.size(2), samples.size(3)));
  std::vector<std::vector<at::Tensor>> rows;
  for (int64_t s = 0; s < samples.size(0); ++s) {
    std::vector<at::Tensor> row = {draw::upscale(background, factor)};
    for (int64_t n = 0; n < num_samples; ++n) {
      row.push_back(draw::upscale(draw::label_overlay(background, samples[s][n], classes), factor));
    }
    rows.push_back(std::move(row));
  }
  return draw::tile_grid(rows, labels);
}

int64_t write_samples(const fs::path& predictions, const fs::path& out,
                      const SampleFolderOptions& options, const Progress& progress) {
  TORCH_CHECK(options.num_samples >= 1, "the number of samples must be >= 1, got ",
              options.num_samples);
  TORCH_CHECK(std::isfinite(options.controls.temperature) && options.controls.temperature >= 0,
              "temperature must be finite and >= 0, got ", options.controls.temperature);
  const std::vector<PredictionCase> cases =
      predictions::read_prediction_csv(predictions, /*require_annotations=*/false);
  io::write_folder_atomically(out, "output folder", [&](const fs::path& staging) {
    runtime::for_each_case(
        static_cast<int64_t>(cases.size()),
        [&](int64_t i) {
          const PredictionCase& c = cases[i];
          const PredictionMaps maps = predictions::read_prediction_maps(c);
          const int64_t classes = maps.mean.size(0);
          const int64_t rank = maps.cov_factor.size(0) / classes;
          const at::Tensor& class_weights = options.controls.class_weights;
          TORCH_CHECK(!class_weights.defined() || class_weights.numel() == classes,
                      "class weights: ", class_weights.defined() ? class_weights.numel() : 0,
                      " values, but ", c.logit_mean.string(), " has C = ", classes,
                      " classes: expected one weight per class");
          const at::Tensor& rank_weights = options.controls.rank_weights;
          TORCH_CHECK(!rank_weights.defined() || rank_weights.numel() == rank,
                      "rank weights: ", rank_weights.defined() ? rank_weights.numel() : 0,
                      " values, but ", c.cov_factor.string(), " has rank R = ", rank,
                      ": expected one weight per rank");
          const bool planar = maps.mean.dim() == 3;
          const std::string ext = planar ? ".png" : ".nii.gz";
          // Volumes keep the geometry of their maps, so that samples overlay the input.
          const io::Geometry geometry =
              planar ? io::Geometry{}
                     : io::read_geometry(c.logit_mean)
                           .leading(static_cast<size_t>(maps.mean.dim() - 1));
          at::Generator generator =
              at::detail::createCPUGenerator(options.seed + static_cast<uint64_t>(i));
          if (options.sweep) {
            const at::Tensor image = c.image.empty() ? at::Tensor() : io::read_image(c.image);
            TORCH_CHECK(!image.defined() || image.sizes() == maps.mean.sizes().slice(1),
                        c.image.string(), " has shape ", image.sizes(), ", but the maps of case ",
                        c.id, " have ", maps.mean.sizes().slice(1));
            io::write_rgb_png(staging / (c.id + "_sweep_" + options.sweep->name() + ".png"),
                              render_sweep(maps, image, *options.sweep, options.controls,
                                           options.num_samples, generator));
          } else {
            const SampleStatistics statistics = draw_samples(
                maps, options.num_samples, options.controls, generator,
                [&](int64_t n, const at::Tensor& labels) {
                  io::write_label_image(staging / (c.id + "_s" + std::to_string(n) + ext),
                                        stored_labels(labels, classes), geometry);
                },
                options.device);
            const at::Tensor annotations =
                c.annotations.empty()
                    ? at::empty({0}, at::kByte)
                    : predictions::read_annotations(c, classes, maps.mean.sizes().slice(1));
            for (int64_t j = 0; j < annotations.size(0); ++j) {
              io::write_label_image(staging / (c.id + "_l" + std::to_string(j + 1) + ext),
                                    stored_labels(annotations[j], classes), geometry);
            }
            io::write_float_image(staging / (c.id + "_frequency.nii.gz"), statistics.frequency,
                                  geometry);
            io::write_float_image(staging / (c.id + "_entropy.nii.gz"), statistics.entropy,
                                  geometry);
            if (planar) {
              io::write_rgb_png(
                  staging / (c.id + "_entropy.png"),
                  draw::heat_picture(statistics.entropy, std::log(static_cast<double>(classes))));
            }
          }
        },
        progress);
  });
  return static_cast<int64_t>(cases.size());
}

}  // namespace ssn::evaluation
