#include "ssn/data/lidc.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "ssn/io/image.h"

namespace ssn::data {
namespace {

namespace fs = std::filesystem;

at::Tensor centre_crop(const at::Tensor& map, int64_t crop, const fs::path& file) {
  const int64_t h = map.size(-2), w = map.size(-1);
  TORCH_CHECK(h >= crop && w >= crop, file.string(), " is ", h, " x ", w,
              " pixels, smaller than the ", crop, " x ", crop, " crop");
  const int64_t top = (h - crop) / 2, left = (w - crop) / 2;
  return map.slice(-2, top, top + crop).slice(-1, left, left + crop);
}

// [H, W] -> [size, size] by averaging size-aligned blocks (crop must be a multiple of size).
at::Tensor downscale(const at::Tensor& map, int64_t size) {
  const int64_t factor = map.size(-1) / size;
  if (factor == 1) return map;
  return map.reshape({size, factor, size, factor}).mean({1, 3});
}

}  // namespace

std::vector<LidcCase> scan_lidc_split(const fs::path& data_dir, const std::string& split,
                                      const LidcOptions& options) {
  TORCH_CHECK(fs::is_directory(data_dir), "data folder ", data_dir.string(), " is not a folder");
  const fs::path images = data_dir / split / "images";
  const fs::path gt = data_dir / split / "gt";
  TORCH_CHECK(fs::is_directory(images), "data folder ", data_dir.string(), " has no ", split,
              "/images folder (expected the LIDC crops layout <split>/images/<patient>/<slice>.png"
              " and <split>/gt/<patient>/<slice>_l1.png ...)");
  std::vector<LidcCase> cases;
  for (const auto& patient : fs::directory_iterator(images)) {
    if (!patient.is_directory()) continue;
    for (const auto& file : fs::directory_iterator(patient.path())) {
      if (file.path().extension() != ".png") continue;
      LidcCase c;
      const std::string patient_name = patient.path().filename().string();
      const std::string slice = file.path().stem().string();
      c.id = patient_name + "/" + slice;
      c.image = file.path();
      for (int64_t a = 1; a <= options.annotators; ++a) {
        const fs::path mask = gt / patient_name / (slice + "_l" + std::to_string(a) + ".png");
        TORCH_CHECK(fs::is_regular_file(mask), "annotator mask ", mask.string(), " is missing (",
                    c.image.string(), " needs masks _l1 .. _l", options.annotators, ")");
        c.annotations.push_back(mask);
      }
      cases.push_back(std::move(c));
    }
  }
  TORCH_CHECK(!cases.empty(), images.string(), " holds no <patient>/<slice>.png images");
  std::sort(cases.begin(), cases.end(),
            [](const LidcCase& a, const LidcCase& b) { return a.id < b.id; });
  return cases;
}

LidcExample load_lidc_example(const LidcCase& c, const LidcOptions& options) {
  TORCH_CHECK(options.size >= 1 && options.crop % options.size == 0, "LIDC: the crop (",
              options.crop, ") must be a multiple of the size (", options.size, ")");
  const at::Tensor image = io::read_image(c.image);
  TORCH_CHECK(image.dim() == 2, c.image.string(), " must be a 2-D grey image, got shape ",
              image.sizes());
  at::Tensor pixels =
      downscale(centre_crop(image.to(at::kFloat), options.crop, c.image), options.size);
  if (options.intensity == LidcOptions::Intensity::kStandardise) {
    // Per-image standardisation: the crops come from CT windows of differing contrast.
    pixels = (pixels - pixels.mean()) / pixels.std(/*unbiased=*/false).clamp_min(1e-6);
  } else {
    // PHiSeg's: the image in [0, 1] minus 0.5; integer codes over the format's largest code.
    double largest = 1.0;
    if (image.scalar_type() == at::kByte) {
      largest = 255.0;
    } else if (!image.is_floating_point()) {
      TORCH_CHECK(image.min().item<int64_t>() >= 0 && image.max().item<int64_t>() <= 65535,
                  c.image.string(), ": intensity minus_half needs 8- or 16-bit codes, got values ",
                  image.min().item<int64_t>(), " to ", image.max().item<int64_t>());
      largest = 65535.0;
    }
    pixels = pixels / largest - 0.5;
  }
  std::vector<at::Tensor> masks;
  for (const auto& path : c.annotations) {
    const at::Tensor mask = io::read_label_image(path);
    TORCH_CHECK(mask.sizes() == image.sizes(), path.string(), " has shape ", mask.sizes(),
                ", but its image ", c.image.string(), " has ", image.sizes());
    const at::Tensor values = std::get<0>(at::_unique(mask, /*sorted=*/true));
    const bool is_binary =
        values.numel() == 1 || (values.numel() == 2 && values[0].item<int64_t>() == 0);
    TORCH_CHECK(is_binary, path.string(), " is not a binary mask: it holds ", values.numel(),
                " distinct values from ", values.min().item<int64_t>(), " to ",
                values.max().item<int64_t>(), " (expected 0 and one foreground value)");
    const at::Tensor binary = centre_crop(mask.ne(0).to(at::kFloat), options.crop, path);
    masks.push_back((downscale(binary, options.size) >= 0.5).to(at::kLong));
  }
  return {c.id, pixels.unsqueeze(0).contiguous(), at::stack(masks)};
}

LidcDataset::LidcDataset(const fs::path& data_dir, const std::string& split, LidcOptions options)
    : options_(options) {
  for (const LidcCase& c : scan_lidc_split(data_dir, split, options_)) {
    examples_.push_back(load_lidc_example(c, options_));
  }
}

namespace {

// Bilinear reads of maps [C, H, W] at pixel coordinates x, y [H', W'] (pixel centres at integer
// coordinates), zero outside: what OpenCV's INTER_LINEAR with a constant 0 border gives.
at::Tensor sample_bilinear(const at::Tensor& maps, const at::Tensor& x, const at::Tensor& y) {
  const double w = static_cast<double>(maps.size(2)), h = static_cast<double>(maps.size(1));
  // grid_sample with align_corners: -1 and 1 are the centres of the first and last pixels.
  const at::Tensor grid =
      at::stack({x / std::max(w - 1, 1.0) * 2 - 1, y / std::max(h - 1, 1.0) * 2 - 1}, -1);
  return at::grid_sampler_2d(maps.unsqueeze(0), grid.unsqueeze(0).to(maps.scalar_type()),
                             /*interpolation_mode=*/0, /*padding_mode=*/0,
                             /*align_corners=*/true)[0];
}

}  // namespace

std::pair<at::Tensor, at::Tensor> phiseg_augment(const at::Tensor& image, const at::Tensor& target,
                                                 int64_t num_classes, at::Generator& generator) {
  if (at::randint(2, {1}, generator, at::kLong).item<int64_t>() != 0) return {image, target};
  const int64_t h = image.size(1), w = image.size(2);
  // Image and one-hot labels warped together; labels back by argmax (ties: the lower class).
  // Several annotations [A, H, W] share the one transform.
  const at::Tensor annotations = target.dim() == 2 ? target.unsqueeze(0) : target;
  const int64_t count = annotations.size(0);
  at::Tensor maps =
      at::cat({image.to(at::kFloat), at::one_hot(annotations.to(at::kLong), num_classes)
                                         .permute({0, 3, 1, 2})
                                         .reshape({count * num_classes, h, w})
                                         .to(at::kFloat)});
  // 1. Rotation about (W/2, H/2) by an angle uniform in [-10, 10] degrees.
  const double angle =
      (at::rand({1}, generator, at::kDouble).item<double>() * 20.0 - 10.0) * M_PI / 180.0;
  const at::Tensor ys = at::arange(h, at::kDouble).view({h, 1}).expand({h, w});
  const at::Tensor xs = at::arange(w, at::kDouble).view({1, w}).expand({h, w});
  const double cx = static_cast<double>(w) / 2, cy = static_cast<double>(h) / 2;
  const double c = std::cos(angle), s = std::sin(angle);
  // Output pixel (x, y) reads the input at the inverse rotation of (x, y) about the centre.
  maps =
      sample_bilinear(maps, cx + c * (xs - cx) - s * (ys - cy), cy + s * (xs - cx) + c * (ys - cy));
  // 2. A square crop of side r in [S - 30 S / 128, S] at a uniform corner, resized back to S.
  const int64_t size = std::min(h, w);
  const int64_t smallest = size - (30 * size + 64) / 128;
  const int64_t r = at::randint(smallest, size + 1, {1}, generator, at::kLong).item<int64_t>();
  const int64_t px = at::randint(0, w - r + 1, {1}, generator, at::kLong).item<int64_t>();
  const int64_t py = at::randint(0, h - r + 1, {1}, generator, at::kLong).item<int64_t>();
  // OpenCV's resize: half-pixel centres, clamped to the crop's edge pixels.
  const auto source = [&](int64_t out, int64_t offset) {
    const double scale = static_cast<double>(r) / static_cast<double>(out);
    return ((at::arange(out, at::kDouble) + 0.5) * scale - 0.5).clamp(0, r - 1) + offset;
  };
  const at::Tensor sy = source(h, py).view({h, 1}).expand({h, w});
  const at::Tensor sx = source(w, px).view({1, w}).expand({h, w});
  maps = sample_bilinear(maps, sx, sy);
  const at::Tensor labels =
      maps.narrow(0, 1, count * num_classes).view({count, num_classes, h, w}).argmax(1);
  return {maps.narrow(0, 0, 1).to(image.scalar_type()).contiguous(),
          target.dim() == 2 ? labels[0] : labels};
}

TrainingBatch make_training_batch(const LidcDataset& dataset, const std::vector<int64_t>& indices,
                                  at::Generator generator, LidcAugmentation augmentation,
                                  bool all_annotations) {
  TORCH_CHECK(!indices.empty(), "make_training_batch: no indices");
  std::vector<at::Tensor> images, targets;
  for (int64_t i : indices) {
    const LidcExample& example = dataset[i];
    at::Tensor image = example.image;  // [1, H, W]
    at::Tensor target;                 // [H, W], or [A, H, W] with all annotations
    if (all_annotations) {
      target = example.annotations;
    } else {
      const int64_t annotator =
          at::randint(example.annotations.size(0), {1}, generator, at::kLong).item<int64_t>();
      target = example.annotations[annotator];
    }
    const int64_t y = target.dim() - 2, x = target.dim() - 1;  // the target's spatial axes
    if (augmentation == LidcAugmentation::kPhiseg) {
      std::tie(image, target) = phiseg_augment(image, target, 2, generator);
    } else if (augmentation == LidcAugmentation::kFlipsAndTurns) {
      if (at::rand({1}, generator).item<double>() < 0.5) {
        image = image.flip({2});
        target = target.flip({x});
      }
      const int64_t turns = at::randint(4, {1}, generator, at::kLong).item<int64_t>();
      image = at::rot90(image, turns, {1, 2});
      target = at::rot90(target, turns, {y, x});
    }
    images.push_back(image);
    targets.push_back(target);
  }
  return {at::stack(images).contiguous(), at::stack(targets).contiguous(), at::Tensor()};
}

struct BatchPrefetcher::State {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<TrainingBatch> ready;
  std::exception_ptr error;
  bool stop = false;
  size_t taken = 0;
  size_t total = 0;
  std::thread worker;
};

BatchPrefetcher::BatchPrefetcher(const LidcDataset& dataset,
                                 std::vector<std::vector<int64_t>> batches, at::Generator generator,
                                 LidcAugmentation augmentation, bool all_annotations, size_t depth)
    : state_(std::make_unique<State>()) {
  TORCH_CHECK(depth >= 1, "BatchPrefetcher: depth must be >= 1");
  state_->total = batches.size();
  State* s = state_.get();
  s->worker = std::thread(
      [s, &dataset, batches = std::move(batches), generator, augmentation, all_annotations, depth] {
        try {
          for (const auto& indices : batches) {
            TrainingBatch batch =
                make_training_batch(dataset, indices, generator, augmentation, all_annotations);
            std::unique_lock<std::mutex> lock(s->mutex);
            s->changed.wait(lock, [&] { return s->stop || s->ready.size() < depth; });
            if (s->stop) return;
            s->ready.push_back(std::move(batch));
            s->changed.notify_all();
          }
        } catch (...) {
          std::lock_guard<std::mutex> lock(s->mutex);
          s->error = std::current_exception();
          s->changed.notify_all();
        }
      });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
    state_->changed.notify_all();
  }
  state_->worker.join();
}

TrainingBatch BatchPrefetcher::next() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  TORCH_CHECK(state_->taken < state_->total, "BatchPrefetcher: all ", state_->total,
              " batches were taken");
  state_->changed.wait(lock, [&] { return !state_->ready.empty() || state_->error; });
  if (state_->ready.empty()) std::rethrow_exception(state_->error);
  TrainingBatch batch = std::move(state_->ready.front());
  state_->ready.pop_front();
  ++state_->taken;
  state_->changed.notify_all();
  return batch;
}

}  // namespace ssn::data
