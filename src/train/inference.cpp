#include "ssn/train/inference.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>

#include "ssn/data/volumes.h"
#include "ssn/predictions/predictions_folder.h"
#include "ssn/runtime/memory_tracker.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {
namespace {

// Starts of output tiles of length `tile` along an axis of `length`, stepping by `step`. With
// `shift_last`, the last tile is moved back to end at the axis' end (overlapping tiles); otherwise
// it may stick out and is cut (exact tiling keeps every start a multiple of `step`).
std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t step, bool shift_last) {
  std::vector<int64_t> starts;
  if (tile >= length) return {0};
  for (int64_t start = 0; start < length; start += step) {
    if (start + tile >= length) {
      starts.push_back(shift_last ? length - tile : start);
      break;
    }
    starts.push_back(start);
  }
  return starts;
}

// Every combination of per-axis tile starts: exact tiles of the output size (the last one may
// stick out), or tiles overlapping by a quarter whose last one ends at the axis' end.
std::vector<std::vector<int64_t>> tile_grid(const std::vector<int64_t>& spatial,
                                            const std::vector<int64_t>& tile_output,
                                            bool overlapping) {
  std::vector<std::vector<int64_t>> tiles = {{}};
  for (size_t d = 0; d < spatial.size(); ++d) {
    const int64_t step =
        overlapping ? std::max<int64_t>(1, tile_output[d] * 3 / 4) : tile_output[d];
    std::vector<std::vector<int64_t>> extended;
    for (const auto& prefix : tiles) {
      for (int64_t start : tile_starts(spatial[d], tile_output[d], step, overlapping)) {
        auto tile = prefix;
        tile.push_back(start);
        extended.push_back(tile);
      }
    }
    tiles = std::move(extended);
  }
  return tiles;
}

// Writes one tile's maps (cov_diag, cov_factor undefined for deterministic / diagonal models) at
// `start` into `result`, cut where the tile sticks out of the image: summed with a count in
// `weight` when averaging overlapping tiles, copied otherwise.
void place_tile(const ImagePrediction& tile, const std::vector<int64_t>& start, bool average,
                ImagePrediction& result, const at::Tensor& weight) {
  at::Tensor mean_tile = tile.mean, diag_tile = tile.cov_diag, factor_tile = tile.cov_factor;
  at::Tensor mean_target = result.mean, diag_target = result.cov_diag,
             factor_target = result.cov_factor, weight_target = weight;
  for (size_t d = 0; d < start.size(); ++d) {
    const auto axis = static_cast<int64_t>(d);
    const int64_t length =
        std::min(tile.mean.size(1 + axis), result.mean.size(1 + axis) - start[d]);
    mean_tile = mean_tile.narrow(1 + axis, 0, length);
    if (diag_tile.defined()) diag_tile = diag_tile.narrow(1 + axis, 0, length);
    if (factor_tile.defined()) factor_tile = factor_tile.narrow(1 + axis, 0, length);
    mean_target = mean_target.narrow(1 + axis, start[d], length);
    diag_target = diag_target.narrow(1 + axis, start[d], length);
    factor_target = factor_target.narrow(1 + axis, start[d], length);
    if (weight.defined()) weight_target = weight_target.narrow(axis, start[d], length);
  }
  if (average) {
    mean_target.add_(mean_tile);
    if (diag_tile.defined()) diag_target.add_(diag_tile);
    if (factor_tile.defined()) factor_target.add_(factor_tile);
    weight_target.add_(1.0);
  } else {
    mean_target.copy_(mean_tile);
    if (diag_tile.defined()) diag_target.copy_(diag_tile);
    if (factor_tile.defined()) factor_target.copy_(factor_tile);
  }
}

}  // namespace

ImagePrediction predict_image(nn::SegmentationModel& model, const at::Tensor& image,
                              const at::Tensor& mask, const TilingOptions& options) {
  const nn::BackboneImpl& backbone = model->backbone();
  const int64_t dims = backbone.dimension();
  TORCH_CHECK(image.dim() == dims + 1, "predict: expected an image [I, *spatial] with ", dims,
              " spatial axes, got ", image.sizes());
  TORCH_CHECK(mask.sizes() == image.sizes().slice(1), "predict: the mask ", mask.sizes(),
              " does not match the image ", image.sizes());
  TORCH_CHECK(static_cast<int64_t>(options.tile_input.size()) == dims,
              "predict: the tile size needs ", dims, " values, got ", options.tile_input.size());
  const std::vector<int64_t> spatial(image.sizes().begin() + 1, image.sizes().end());
  std::vector<int64_t> tile_output, offset;
  bool same_size = true;
  for (int64_t d = 0; d < dims; ++d) {
    tile_output.push_back(backbone.output_size(options.tile_input[d]));
    offset.push_back(options.tile_input[d] / 2 - tile_output[d] / 2);
    same_size = same_size && tile_output[d] == options.tile_input[d];
  }
  const std::vector<std::vector<int64_t>> tiles = tile_grid(spatial, tile_output, same_size);
  const int64_t classes = model->num_classes();
  const bool stochastic = model->kind() != nn::ModelKind::kDeterministic;
  std::vector<int64_t> map_shape = {classes};
  map_shape.insert(map_shape.end(), spatial.begin(), spatial.end());
  ImagePrediction result;
  result.mean = at::zeros(map_shape, at::kFloat);
  result.cov_diag = at::zeros(map_shape, at::kFloat);
  at::Tensor weight = same_size ? at::zeros(spatial, at::kFloat) : at::Tensor();
  const at::Tensor float_mask = mask.to(at::kFloat);
  torch::NoGradGuard no_grad;
  model->eval();
  int64_t tile_voxels = 1;
  for (int64_t size : options.tile_input) tile_voxels *= size;
  const int64_t per_tile = tile_voxels * backbone.widest_layer() * 4 * 2;
  const auto batch = static_cast<size_t>(
      std::max<int64_t>(1, std::min(options.batch_size, options.memory_budget_bytes / per_tile)));
  for (size_t first = 0; first < tiles.size(); first += batch) {
    const size_t last = std::min(tiles.size(), first + batch);
    std::vector<at::Tensor> inputs, masks;
    for (size_t t = first; t < last; ++t) {
      std::vector<int64_t> input_start;
      for (int64_t d = 0; d < dims; ++d) input_start.push_back(tiles[t][d] - offset[d]);
      inputs.push_back(data::crop_padded(image, input_start, options.tile_input));
      masks.push_back(data::crop_padded(float_mask, tiles[t], tile_output).gt(0.5));
    }
    const nn::ModelOutput out =
        model->forward(at::stack(inputs).to(options.device), at::stack(masks).to(options.device));
    const at::Tensor mean = out.mean_logits.cpu();
    at::Tensor cov_diag, cov_factor;
    if (out.stochastic) {
      cov_diag = out.stochastic->cov_diag.cpu();
      cov_factor = out.stochastic->cov_factor.cpu();
    }
    if (!result.cov_factor.defined()) {
      std::vector<int64_t> factor_shape = map_shape;
      if (stochastic && cov_factor.size(1) > 0) factor_shape[0] = cov_factor.size(1);
      result.cov_factor = at::zeros(factor_shape, at::kFloat);
    }
    for (size_t t = first; t < last; ++t) {
      const int64_t b = static_cast<int64_t>(t - first);
      ImagePrediction tile{mean[b], stochastic ? cov_diag[b] : at::Tensor(),
                           stochastic && cov_factor.size(1) > 0 ? cov_factor[b] : at::Tensor()};
      place_tile(tile, tiles[t], /*average=*/same_size, result, weight);
    }
  }
  if (same_size) {
    const at::Tensor inverse = weight.reciprocal().unsqueeze(0);
    result.mean.mul_(inverse);
    result.cov_diag.mul_(inverse);
    result.cov_factor.mul_(inverse);
  }
  // Samples of a deterministic model are its argmax.
  if (!stochastic) result.cov_diag.fill_(predictions::kDeterministicVariance);
  return result;
}

}  // namespace ssn::train

namespace ssn::train {

nlohmann::json benchmark_predict(const config::Config& config, const std::vector<int64_t>& shape,
                                 uint64_t seed) {
  TORCH_CHECK(static_cast<int64_t>(shape.size()) == config.model.dimensions,
              "the benchmark shape needs ", config.model.dimensions, " sizes for this model, got ",
              shape.size());
  torch::manual_seed(seed);
  nn::SegmentationModel model = build_model(config.model);
  apply_precision(*model, config, torch::kCPU);
  TilingOptions options;
  options.tile_input = config.test.input_patch_size.empty() ? config.training.input_patch_size
                                                            : config.test.input_patch_size;
  if (options.tile_input.empty()) {
    options.tile_input.assign(shape.size(), model->backbone().input_size_for(1));
  }
  options.batch_size = config.test.batch_size;
  std::vector<int64_t> image_shape = {config.model.input_channels};
  image_shape.insert(image_shape.end(), shape.begin(), shape.end());
  const at::Tensor image = at::randn(image_shape);
  // An ellipsoid filling most of the volume, like a brain mask.
  at::Tensor distance = at::zeros(shape);
  for (size_t d = 0; d < shape.size(); ++d) {
    std::vector<int64_t> view(shape.size(), 1);
    view[d] = shape[d];
    const double half = shape[d] / 2.0;
    distance =
        distance +
        ((at::arange(shape[d], at::kFloat) - half) / (0.45 * shape[d])).square().reshape(view);
  }
  const at::Tensor mask = distance < 1.0;
  runtime::CpuMemoryTracker tracker;
  const auto start = std::chrono::steady_clock::now();
  const ImagePrediction prediction = predict_image(model, image, mask, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  int64_t tiles = 1;
  std::vector<int64_t> tile_output;
  for (size_t d = 0; d < shape.size(); ++d) {
    tile_output.push_back(model->backbone().output_size(options.tile_input[d]));
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    tiles *= static_cast<int64_t>(
        std::max<int64_t>(1, (shape[d] + tile_output[d] - 1) / tile_output[d]));
  }
  return {
      {"model", config.model.name},
      {"shape", image_shape},
      {"tile_input", options.tile_input},
      {"tile_output", tile_output},
      {"tiles", tiles},
      {"batch_size", options.batch_size},
      {"seconds", seconds},
      {"peak_rss_bytes", static_cast<int64_t>(usage.ru_maxrss) * 1024},
      {"peak_tensor_bytes", tracker.peak_bytes()},
      {"output_bytes",
       (prediction.mean.numel() + prediction.cov_diag.numel() + prediction.cov_factor.numel()) * 4},
      {"threads", at::get_num_threads()}};
}

}  // namespace ssn::train
