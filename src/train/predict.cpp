#include "ssn/train/predict.h"

#include <torch/torch.h>

#include <algorithm>

#include "ssn/data/lidc.h"
#include "ssn/data/volumes.h"
#include "ssn/io/csv.h"
#include "ssn/predictions/predictions_folder.h"
#include "ssn/train/checkpoint.h"
#include "ssn/train/inference.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;

// Every non-empty subset of `axes`: the mirror images test.mirror adds to the image itself.
std::vector<std::vector<int64_t>> mirror_subsets(const std::vector<int64_t>& axes) {
  std::vector<std::vector<int64_t>> subsets;
  for (uint64_t bits = 1; bits < (uint64_t{1} << axes.size()); ++bits) {
    std::vector<int64_t> subset;
    for (size_t a = 0; a < axes.size(); ++a) {
      if (bits & (uint64_t{1} << a)) subset.push_back(axes[a]);
    }
    subsets.push_back(subset);
  }
  return subsets;
}

// test.mirror: `mean` (the image's own mean logits) averaged with the mean logits of each mirror
// image, mirrored back. `mean_of(flip)` predicts the image mirrored along the axes `flip` of the
// input and returns its mean logits with the same axes.
template <typename MeanOf>
at::Tensor mirrored_mean(const at::Tensor& mean, const std::vector<int64_t>& axes,
                         const MeanOf& mean_of) {
  at::Tensor sum = mean.to(at::kFloat).clone();
  const auto subsets = mirror_subsets(axes);
  for (const auto& flip : subsets) sum += mean_of(flip).to(at::kFloat).flip(flip);
  return sum.div_(static_cast<double>(subsets.size() + 1));
}

// CSV-indexed volumes: each case predicted whole by tiling, every map written with the geometry
// of the case's first channel.
void predict_volumes(const config::Config& config, const PredictOptions& options,
                     nn::SegmentationModel& model, torch::Device device,
                     predictions::PredictionsWriter& writer, int64_t rank, int64_t world) {
  data::CsvColumns columns = csv_columns(config.data);
  if (!io::read_csv(options.test_csv).column.count(columns.target)) columns.target.clear();
  std::vector<data::VolumeCase> cases = data::read_case_csv(options.test_csv, columns);
  if (options.max_cases > 0 && static_cast<int64_t>(cases.size()) > options.max_cases) {
    cases.resize(static_cast<size_t>(options.max_cases));
  }
  TilingOptions tiling;
  tiling.tile_input = config.test.input_patch_size.empty() ? config.training.input_patch_size
                                                           : config.test.input_patch_size;
  if (tiling.tile_input.empty()) {
    tiling.tile_input.assign(static_cast<size_t>(config.model.dimensions),
                             model->backbone().input_size_for(1));
  }
  tiling.batch_size = config.test.batch_size;
  tiling.device = device;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (static_cast<int64_t>(i) % world != rank) continue;  // another rank's case
    const data::VolumeCase& c = cases[i];
    const data::Volume volume =
        data::load_volume(c, config.model.num_classes, config.model.dimensions);
    const ImagePrediction prediction = predict_image(model, volume.image, volume.mask, tiling);
    predictions::CasePrediction p;
    p.id = c.id;
    p.mean = prediction.mean;
    if (config.test.mirror) {
      std::vector<int64_t> spatial;  // the axes of volume.image [channels, *spatial]
      for (int64_t d = 1; d < volume.image.dim(); ++d) spatial.push_back(d);
      p.mean = mirrored_mean(prediction.mean, spatial, [&](const std::vector<int64_t>& flip) {
        std::vector<int64_t> mask_axes;  // the mask has no channel axis
        for (int64_t axis : flip) mask_axes.push_back(axis - 1);
        const at::Tensor mask = volume.mask.defined() ? volume.mask.flip(mask_axes) : volume.mask;
        return predict_image(model, volume.image.flip(flip), mask, tiling).mean;
      });
    }
    p.cov_diag = prediction.cov_diag;
    p.cov_factor = prediction.cov_factor;
    p.image = volume.image[0];
    if (volume.target.defined()) p.annotations = volume.target.unsqueeze(0);
    p.geometry = volume.geometry;
    writer.write_case(p);
  }
}

// The LIDC crops layout: test.batch_size images per forward pass (and per mirrored pass).
void predict_images(const config::Config& config, const PredictOptions& options,
                    nn::SegmentationModel& model, torch::Device device,
                    predictions::PredictionsWriter& writer, int64_t rank, int64_t world) {
  const data::LidcDataset dataset(options.data_dir, options.split, lidc_options(config.data));
  torch::NoGradGuard no_grad;
  const int64_t cases =
      options.max_cases > 0 ? std::min(options.max_cases, dataset.size()) : dataset.size();
  std::vector<int64_t> mine;  // this rank's cases, in order
  for (int64_t i = rank; i < cases; i += world) mine.push_back(i);
  const size_t chunk = static_cast<size_t>(config.test.batch_size);
  for (size_t first = 0; first < mine.size(); first += chunk) {
    const size_t count = std::min(chunk, mine.size() - first);
    std::vector<at::Tensor> images;
    for (size_t k = first; k < first + count; ++k) images.push_back(dataset[mine[k]].image);
    const at::Tensor input = at::stack(images).to(device);  // [B, channels, H, W]
    const nn::ModelOutput out = model->forward(input);
    at::Tensor mean = out.mean_logits.cpu();  // [B, C, H, W]
    if (config.test.mirror) {
      mean = mirrored_mean(mean, {2, 3}, [&](const std::vector<int64_t>& flip) {
        return model->forward(input.flip(flip)).mean_logits.cpu();
      });
    }
    const at::Tensor cov_diag = out.stochastic ? out.stochastic->cov_diag.cpu() : at::Tensor();
    const at::Tensor cov_factor = out.stochastic ? out.stochastic->cov_factor.cpu() : at::Tensor();
    for (size_t b = 0; b < count; ++b) {
      const data::LidcExample& example = dataset[mine[first + b]];
      const int64_t index = static_cast<int64_t>(b);
      predictions::CasePrediction p;
      p.id = example.id;
      p.mean = mean[index];  // [C, H, W]
      if (out.stochastic) {
        p.cov_diag = cov_diag[index];
        p.cov_factor = cov_factor[index];
      }
      p.image = example.image[0];
      p.annotations = example.annotations;
      writer.write_case(p);
    }
  }
}

}  // namespace

std::optional<evaluation::Calibration> checkpoint_calibration(const fs::path& checkpoint,
                                                              bool mirror, std::string* why_not) {
  const fs::path path = checkpoint.parent_path() / evaluation::kCalibrationFile;
  if (why_not != nullptr) why_not->clear();
  if (!fs::exists(path)) return std::nullopt;
  evaluation::Calibration calibration = evaluation::read_calibration(path);
  const auto [size, crc] = evaluation::file_identity(checkpoint);
  // The bytes decide: a copy of the calibrated checkpoint under another name is the same model.
  if (calibration.checkpoint_size != size || calibration.checkpoint_crc != crc) {
    if (why_not != nullptr) {
      *why_not = path.string() + " was fitted for " +
                 (calibration.checkpoint_name.empty() ? std::string("an unnamed checkpoint")
                                                      : calibration.checkpoint_name) +
                 ", not for this " + checkpoint.filename().string() +
                 " (its bytes differ; ssn calibrate fits it again)";
    }
    return std::nullopt;
  }
  if (calibration.mirror != mirror) {
    if (why_not != nullptr) {
      *why_not = path.string() + " was fitted on predictions made " +
                 (calibration.mirror ? "with" : "without") +
                 " test-time mirroring (config test.mirror), and these are made " +
                 (mirror ? "with" : "without") + " it (ssn calibrate fits it again)";
    }
    return std::nullopt;
  }
  return calibration;
}

int64_t predict(const config::Config& config, const PredictOptions& options) {
  const torch::Device device = checked_device(options.device);
  const bool volumes = config.data.dataset == config::Dataset::kCsv;
  TORCH_CHECK(!volumes || !options.test_csv.empty(),
              "the config's data section describes CSV-indexed volumes: give --test-csv-path");
  TORCH_CHECK(volumes || !options.data_dir.empty(),
              "the config's data section describes the LIDC crops layout: give --data-dir");
  TORCH_CHECK(!fs::exists(options.out) || fs::is_empty(options.out), "output folder ",
              options.out.string(), " already exists and is not empty");
  nn::SegmentationModel model = build_model(config.model);
  load_model_weights(options.checkpoint, *model);
  model->to(device);
  apply_precision(*model, config, device);
  model->eval();
  const std::optional<evaluation::Calibration> calibration =
      options.carry_calibration ? checkpoint_calibration(options.checkpoint, config.test.mirror)
                                : std::nullopt;
  Communicator* communicator = options.communicator;
  const int64_t rank = communicator ? communicator->rank() : 0;
  const int64_t world = communicator ? communicator->size() : 1;
  const auto run = [&](predictions::PredictionsWriter& writer) {
    if (volumes) {
      predict_volumes(config, options, model, device, writer, rank, world);
    } else {
      predict_images(config, options, model, device, writer, rank, world);
    }
  };
  fs::path out = options.out;
  if (out.filename().empty()) out = out.parent_path();
  const auto shard = [&](int64_t r) {
    return out.parent_path() / (".ssn-shard-" + out.filename().string() + "-" + std::to_string(r));
  };
  if (rank > 0) {
    // This rank's cases into its shard folder; rank 0 takes it over after the barrier.
    const fs::path folder = shard(rank);
    TORCH_CHECK(!fs::exists(folder), "rank ", rank, ": ", folder.string(),
                " exists (left by an earlier sharded prediction that failed?); remove it");
    fs::create_directories(folder);
    int64_t written = 0;
    try {
      predictions::PredictionsWriter writer(folder);
      run(writer);
      writer.finish();
      written = static_cast<int64_t>(writer.rows_count());
    } catch (...) {
      std::error_code ignored;
      fs::remove_all(folder, ignored);
      throw;
    }
    communicator->barrier();  // the shard is complete
    return written;
  }
  return predictions::write_predictions_folder(
      options.out, "output folder", [&](predictions::PredictionsWriter& writer) {
        run(writer);
        if (world > 1) {
          communicator->barrier();  // every shard is complete; they are this run's to move
          std::vector<fs::path> shards;
          for (int64_t r = 1; r < world; ++r) shards.push_back(shard(r));
          try {
            writer.merge_shards(shards);
          } catch (...) {
            std::error_code ignored;
            for (const auto& folder : shards) fs::remove_all(folder, ignored);
            throw;
          }
          for (const auto& folder : shards) fs::remove_all(folder);
        }
        if (calibration) {
          evaluation::write_calibration(writer.folder() / evaluation::kCalibrationFile,
                                        *calibration);
        }
      });
}

}  // namespace ssn::train
