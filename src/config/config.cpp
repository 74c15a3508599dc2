#include "ssn/config/config.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

namespace ssn::config {
namespace {

using nlohmann::json;

// Walks one object: every key must be read or declared known, types are checked on read.
class Section {
 public:
  Section(const json& value, std::string path, std::string origin)
      : value_(value), path_(std::move(path)), origin_(std::move(origin)) {
    TORCH_CHECK(value_.is_object(), origin_, ": ", path_, " must be an object, got ",
                value_.type_name());
  }
  ~Section() noexcept(false) {
    if (std::uncaught_exceptions() > 0) return;
    for (const auto& [key, ignored] : value_.items()) {
      TORCH_CHECK(read_.count(key), origin_, ": unknown key ", path_, ".", key);
    }
  }

  template <typename T>
  void read(const char* key, T& out) {
    read_.insert(key);
    if (!value_.contains(key)) return;
    try {
      out = value_.at(key).get<T>();
    } catch (const json::exception&) {
      TORCH_CHECK(false, origin_, ": ", path_, ".", key, " has the wrong type (",
                  value_.at(key).type_name(), ": ", value_.at(key).dump(), ")");
    }
  }
  void read_number(const char* key, double& out) {
    read_.insert(key);
    if (!value_.contains(key)) return;
    TORCH_CHECK(value_.at(key).is_number(), origin_, ": ", path_, ".", key,
                " must be a number, got ", value_.at(key).dump());
    out = value_.at(key).get<double>();
  }
  void read_integer(const char* key, int64_t& out, int64_t minimum) {
    read_.insert(key);
    if (!value_.contains(key)) return;
    TORCH_CHECK(value_.at(key).is_number_integer(), origin_, ": ", path_, ".", key,
                " must be an integer, got ", value_.at(key).dump());
    out = value_.at(key).get<int64_t>();
    TORCH_CHECK(out >= minimum, origin_, ": ", path_, ".", key, " must be >= ", minimum, ", got ",
                out);
  }
  /// The single "Name": {options} entry of a section like "model" or "loss".
  std::pair<std::string, json> named(const std::set<std::string>& allowed) {
    TORCH_CHECK(value_.size() == 1, origin_, ": ", path_,
                " must hold exactly one named entry, e.g. {\"", *allowed.begin(), "\": {...}}");
    const auto item = value_.begin();
    TORCH_CHECK(allowed.count(item.key()), origin_, ": unknown ", path_, " \"", item.key(),
                "\" (expected one of ", json(allowed).dump(), ")");
    read_.insert(item.key());
    return {item.key(), item.value()};
  }
  /// Declares a key known without reading it (it is read by a nested Section).
  void mark(const char* key) { read_.insert(key); }

 private:
  const json& value_;
  std::string path_;
  std::string origin_;
  std::set<std::string> read_;
};
void parse_model(const json& value, const std::string& origin, ModelConfig& m) {
  Section model(value, "model", origin);
  const auto [name, options] =
      model.named({"StochasticUNet", "UNet", "StochasticDeepMedic", "DeepMedic"});
  m.name = name;
  const bool deepmedic = name.find("DeepMedic") != std::string::npos;
  const bool stochastic = name.rfind("Stochastic", 0) == 0;
  m.backbone = deepmedic ? Backbone::kDeepMedic : Backbone::kUNet;
  m.dimensions = deepmedic ? 3 : 2;
  const std::string path = "model." + name;
  Section o(options, path, origin);
  o.read_integer("input_channels", m.input_channels, 1);
  o.read_integer("num_classes", m.num_classes, 2);
  o.read_integer("dimensions", m.dimensions, 2);
  TORCH_CHECK(m.dimensions <= 3, origin, ": ", path, ".dimensions must be 2 or 3, got ",
              m.dimensions);
  if (deepmedic) {
    o.read<std::vector<int64_t>>("feature_maps", m.feature_maps);
    o.read<std::vector<int64_t>>("fully_connected", m.fully_connected);
    o.read<std::vector<int64_t>>("scale_factors", m.scale_factors);
    o.read<std::vector<double>>("dropout", m.dropout);
    TORCH_CHECK(!m.feature_maps.empty() && !m.scale_factors.empty(), origin, ": ", path,
                ": feature_maps and scale_factors must not be empty");
    for (size_t i = 0; i < m.scale_factors.size(); ++i) {
      TORCH_CHECK(
          m.scale_factors[i] >= 1 && (i == 0 || m.scale_factors[i] < m.scale_factors[i - 1]),
          origin, ": ", path,
          ".scale_factors must be >= 1 and strictly decreasing (largest first), got ",
          json(m.scale_factors).dump());
    }
    TORCH_CHECK(m.dropout.size() == m.fully_connected.size() + 1, origin, ": ", path,
                ".dropout needs one value per 1x1 block (fully_connected + 1 = ",
                m.fully_connected.size() + 1, "), got ", m.dropout.size());
  } else {
    o.read<std::vector<int64_t>>("filters", m.filters);
    o.read_integer("convs_per_level", m.convs_per_level, 1);
    // A named choice: the parser's error, prefixed with the file and the key.
    const auto choice = [&](const char* key, std::string value, auto parse) {
      o.read(key, value);
      try {
        return parse(value);
      } catch (const c10::Error& e) {
        TORCH_CHECK(false, origin, ": ", path, ".", key, ": ", e.what_without_backtrace());
      }
    };
    m.normalisation = choice("normalisation", "batch", nn::parse_normalisation);
    m.pooling = choice("pooling", "max", nn::parse_pooling);
    m.upsampling = choice("upsampling", "linear", nn::parse_upsampling);
    m.decoder_widths = choice("decoder_widths", "level", nn::parse_decoder_widths);
    o.read<std::vector<int64_t>>("recombination", m.recombination);
    for (int64_t w : m.recombination) {
      TORCH_CHECK(w >= 1, origin, ": ", path, ".recombination: widths must be >= 1, got ",
                  json(m.recombination).dump());
    }
    o.read_number("batch_norm_epsilon", m.batch_norm_epsilon);
    o.read_number("batch_norm_momentum", m.batch_norm_momentum);
    TORCH_CHECK(m.batch_norm_epsilon > 0, origin, ": ", path,
                ".batch_norm_epsilon must be > 0, got ", m.batch_norm_epsilon);
    TORCH_CHECK(m.batch_norm_momentum >= 0 && m.batch_norm_momentum <= 1, origin, ": ", path,
                ".batch_norm_momentum must be in [0, 1] (PyTorch's convention: TensorFlow's "
                "decay 0.99 is 0.01), got ",
                m.batch_norm_momentum);
  }
  std::string init = "default";
  o.read("init", init);
  TORCH_CHECK(init == "default" || init == "he_normal", origin, ": ", path,
              ".init must be \"default\" or \"he_normal\", got \"", init, "\"");
  m.he_normal_init = init == "he_normal";
  std::string mean_bias_init = "default";
  o.read("mean_bias_init", mean_bias_init);
  TORCH_CHECK(mean_bias_init == "default" || mean_bias_init == "class_frequencies", origin, ": ",
              path, ".mean_bias_init must be \"default\" or \"class_frequencies\", got \"",
              mean_bias_init, "\"");
  m.mean_bias_from_class_frequencies = mean_bias_init == "class_frequencies";
  if (!stochastic) {
    m.kind = nn::ModelKind::kDeterministic;
    m.rank = 0;
  } else {
    o.read_integer("rank", m.rank, 0);
    o.read_number("epsilon", m.epsilon);
    o.read_number("log_diag_bias", m.log_diag_bias);
    o.read_number("factor_init_scale", m.factor_init_scale);
    o.read("factor_bias", m.factor_bias);
    m.kind = m.rank == 0 ? nn::ModelKind::kDiagonal : nn::ModelKind::kLowRank;
  }
}

void parse_data(const json& value, const std::string& origin, const ModelConfig& model,
                DataConfig& d) {
  Section data(value, "data", origin);
  std::string dataset = value.contains("channels") ? "csv" : "lidc";
  data.read("dataset", dataset);
  TORCH_CHECK(dataset == "lidc" || dataset == "csv", origin,
              ": data.dataset must be \"lidc\" or \"csv\", got \"", dataset, "\"");
  d.dataset = dataset == "csv" ? Dataset::kCsv : Dataset::kLidc;
  if (d.dataset == Dataset::kLidc) {
    data.read_integer("crop", d.crop, 1);
    data.read_integer("size", d.size, 1);
    data.read_integer("annotators", d.annotators, 1);
    data.read("intensity", d.intensity);
    TORCH_CHECK(d.intensity == "standardise" || d.intensity == "minus_half", origin,
                ": data.intensity must be \"standardise\" or \"minus_half\", got \"", d.intensity,
                "\"");
    data.read("augmentation", d.augmentation);
    TORCH_CHECK(d.augmentation == "flips_and_turns" || d.augmentation == "phiseg", origin,
                ": data.augmentation must be \"flips_and_turns\" or \"phiseg\", got \"",
                d.augmentation, "\"");
    data.read("train_targets", d.train_targets);
    TORCH_CHECK(d.train_targets == "one_annotator" || d.train_targets == "all_annotators", origin,
                ": data.train_targets must be \"one_annotator\" or \"all_annotators\", got \"",
                d.train_targets, "\"");
    TORCH_CHECK(d.crop % d.size == 0, origin, ": data.crop (", d.crop,
                ") must be a multiple of data.size (", d.size, ")");
    return;
  }
  TORCH_CHECK(!model.mean_bias_from_class_frequencies, origin, ": model.", model.name,
              ".mean_bias_init \"class_frequencies\" needs the LIDC layout (data.dataset "
              "\"lidc\"): volume training sees sampled patches, whose class shares are the "
              "sampler's, not the labels'");
  std::string task = "segmentation";
  data.read("task", task);
  TORCH_CHECK(task == "segmentation", origin, ": data.task must be \"segmentation\", got \"", task,
              "\"");
  data.read("channels", d.channels);
  data.read("target", d.target);
  data.read("sampling_mask", d.sampling_mask);
  data.read("class_names", d.class_names);
  json transformation = json::object();
  data.read("transformation", transformation);
  TORCH_CHECK(transformation.is_object() && transformation.empty(), origin,
              ": data.transformation: ssn applies no input transformations, expected {}, got ",
              transformation.dump());
  TORCH_CHECK(!d.channels.empty(), origin, ": data.channels must name at least one column");
  TORCH_CHECK(
      d.class_names.empty() || static_cast<int64_t>(d.class_names.size()) == model.num_classes,
      origin, ": data.class_names has ", d.class_names.size(), " names, but the model has ",
      model.num_classes, " classes");
  TORCH_CHECK(static_cast<int64_t>(d.channels.size()) == model.input_channels, origin,
              ": data.channels has ", d.channels.size(), " columns, but the model has ",
              model.input_channels, " input_channels");
}

void parse_sampler(const json& value, const std::string& origin, TrainingConfig& t) {
  Section sampler(value, "training.sampler", origin);
  const auto [name, options] = sampler.named({"ForegroundBackgroundPatchSampler"});
  Section o(options, "training.sampler." + name, origin);
  o.read_number("foreground_probability", t.foreground_probability);
  o.read_integer("n_tries", t.n_tries, 1);
  TORCH_CHECK(t.foreground_probability >= 0 && t.foreground_probability <= 1, origin,
              ": training.sampler.", name, ".foreground_probability must be in [0, 1], got ",
              t.foreground_probability);
}

// The whole-image augmentation: the reference's elastic deformation (data/elastic.h).
void parse_augmentation(const json& value, const std::string& origin, int64_t dimensions,
                        TrainingConfig& t) {
  Section augmentation(value, "training.augmentation", origin);
  if (value.empty()) return;
  const auto [name, options] = augmentation.named({"RandomElasticDeformationCoarsePerlinNoise"});
  const std::string path = "training.augmentation." + name;
  Section o(options, path, origin);
  int64_t num_maps = 3;
  o.read("period", t.elastic_period);
  o.read_number("prob", t.elastic_probability);
  o.read_number("alpha", t.elastic_alpha);
  o.read("noise_shape", t.elastic_noise_shape);
  o.read_integer("num_maps", num_maps, 1);
  TORCH_CHECK(t.elastic_probability >= 0 && t.elastic_probability <= 1, origin, ": ", path,
              ".prob must be in [0, 1], got ", t.elastic_probability);
  TORCH_CHECK(std::isfinite(t.elastic_alpha) && t.elastic_alpha >= 0, origin, ": ", path,
              ".alpha must be a finite number >= 0, got ", t.elastic_alpha);
  // Volumes deform (3 values per list); 2-D models train without it and say so (not checked).
  for (const auto* shape : {&t.elastic_period, &t.elastic_noise_shape}) {
    TORCH_CHECK(dimensions != 3 ||
                    (shape->size() == 3 &&
                     std::all_of(shape->begin(), shape->end(), [](int64_t v) { return v >= 1; })),
                origin, ": ", path, ": period and noise_shape need 3 values >= 1, got ",
                json(t.elastic_period).dump(), " and ", json(t.elastic_noise_shape).dump());
  }
}

void check_probability(double p, const std::string& origin, const std::string& path) {
  TORCH_CHECK(p >= 0 && p <= 1, origin, ": ", path, ".prob must be in [0, 1], got ", p);
}

// Patch augmentation; axes are spatial and 0-based in the voxel array's order (z, y, x), as the
// reference's augmention.py indexes its channel-less target and mask (it adds 1 for the image).
void parse_patch_augmentation(const json& value, const std::string& origin, int64_t dimensions,
                              TrainingConfig& t) {
  Section patch(value, "training.patch_augmentation", origin);
  const std::string path = "training.patch_augmentation.";
  if (value.contains("RandomHistogramDeformation")) {
    patch.mark("RandomHistogramDeformation");
    Section o(value.at("RandomHistogramDeformation"), path + "RandomHistogramDeformation", origin);
    o.read_number("prob", t.histogram_probability);
    check_probability(t.histogram_probability, origin, path + "RandomHistogramDeformation");
  }
  if (value.contains("RandomPatchRotation")) {
    patch.mark("RandomPatchRotation");
    Section o(value.at("RandomPatchRotation"), path + "RandomPatchRotation", origin);
    o.read_number("prob", t.rotation_probability);
    check_probability(t.rotation_probability, origin, path + "RandomPatchRotation");
    o.read("allowed_planes", t.rotation_planes);
    for (const auto& plane : t.rotation_planes) {
      const bool valid = plane.size() == 2 && plane[0] != plane[1] && plane[0] >= 0 &&
                         plane[1] >= 0 && plane[0] < dimensions && plane[1] < dimensions;
      TORCH_CHECK(valid, origin, ": ", path,
                  "RandomPatchRotation.allowed_planes: expected pairs of different spatial axes "
                  "in 0..",
                  dimensions - 1, " (0 = the first voxel axis), got ", json(plane).dump());
    }
  }
  if (value.contains("RandomPatchFlip")) {
    patch.mark("RandomPatchFlip");
    Section o(value.at("RandomPatchFlip"), path + "RandomPatchFlip", origin);
    o.read_number("prob", t.flip_probability);
    check_probability(t.flip_probability, origin, path + "RandomPatchFlip");
    o.read("allowed_axis", t.flip_axes);
    for (int64_t axis : t.flip_axes) {
      TORCH_CHECK(axis >= 0 && axis < dimensions, origin, ": ", path,
                  "RandomPatchFlip.allowed_axis: expected spatial axes in 0..", dimensions - 1,
                  " (0 = the first voxel axis), got ", axis);
    }
  }
}

void parse_training(const json& value, const std::string& origin, int64_t dimensions,
                    TrainingConfig& t) {
  Section training(value, "training", origin);
  training.read_integer("batch_size", t.batch_size, 1);
  training.read_integer("num_epochs", t.num_epochs, 0);
  training.read_integer("mean_only_epochs", t.mean_only_epochs, 0);
  training.read("augment", t.augment);
  training.read_integer("max_bad_steps", t.max_bad_steps, 0);
  training.read_number("ema_decay", t.ema_decay);
  TORCH_CHECK(t.ema_decay >= 0.0 && t.ema_decay < 1.0, origin,
              ": training.ema_decay must be in [0, 1) (0: no average of the weights), got ",
              t.ema_decay);
  std::string precision = runtime::to_string(t.precision);
  training.read("precision", precision);
  t.precision = runtime::parse_precision(precision, origin + ": training.precision");
  training.read_integer("patches_per_image", t.patches_per_image, 1);
  training.read_integer("images_per_epoch", t.images_per_epoch, 1);
  training.read<std::vector<int64_t>>("input_patch_size", t.input_patch_size);
  training.read_integer("max_cases_in_memory", t.max_cases_in_memory, 1);
  training.read_integer("num_workers", t.num_workers, 0);
  json extra_metrics = json::object();  // the reference's logging of extra outputs
  training.read("extra_metrics", extra_metrics);
  if (value.contains("sampler")) {
    training.mark("sampler");
    parse_sampler(value.at("sampler"), origin, t);
  }
  if (value.contains("augmentation")) {
    training.mark("augmentation");
    parse_augmentation(value.at("augmentation"), origin, dimensions, t);
  }
  if (value.contains("patch_augmentation")) {
    training.mark("patch_augmentation");
    parse_patch_augmentation(value.at("patch_augmentation"), origin, dimensions, t);
  }
}

void parse_valid(const json& value, const std::string& origin, ValidConfig& v) {
  Section valid(value, "valid", origin);
  valid.read_integer("eval_every", v.eval_every, 1);
  valid.read_integer("num_cases", v.num_cases, 1);
  valid.read_integer("num_samples", v.num_samples, 1);
  valid.read_integer("batch_size", v.batch_size, 1);
  valid.read<std::vector<int64_t>>("input_patch_size", v.input_patch_size);
  valid.read_integer("patches_per_image", v.patches_per_image, 1);
  valid.read_integer("images_per_epoch", v.images_per_epoch, 1);
  valid.read_integer("max_cases_in_memory", v.max_cases_in_memory, 1);
  valid.read_integer("num_workers", v.num_workers, 0);
  valid.read_integer("keep_model_every", v.keep_model_every, 0);
  std::string criterion = to_string(v.best_criterion);
  valid.read("best_criterion", criterion);
  TORCH_CHECK(criterion == "val_loss" || criterion == "val_ged", origin,
              ": valid.best_criterion must be \"val_loss\" or \"val_ged\", got \"", criterion,
              "\"");
  v.best_criterion = criterion == "val_ged" ? BestCriterion::kValGed : BestCriterion::kValLoss;
  valid.read("calibrate", v.calibrate);
  valid.read_integer("calibration_samples", v.calibration_samples, 2);
  valid.read_number("calibration_max_diversity_ratio", v.calibration_max_diversity_ratio);
  valid.read("calibration_avoid_whole_image", v.calibration_avoid_whole_image);
  std::string band_reference = v.calibration_band_on_train_and_val ? "train_and_val" : "val";
  valid.read("calibration_band_reference", band_reference);
  TORCH_CHECK(band_reference == "train_and_val" || band_reference == "val", origin,
              ": valid.calibration_band_reference must be \"train_and_val\" or \"val\", got \"",
              band_reference, "\"");
  v.calibration_band_on_train_and_val = band_reference == "train_and_val";
  TORCH_CHECK(v.calibration_max_diversity_ratio == 0 || v.calibration_max_diversity_ratio >= 1,
              origin, ": valid.calibration_max_diversity_ratio must be 0 (none) or >= 1, got ",
              v.calibration_max_diversity_ratio);
}

void parse_test(const json& value, const std::string& origin, TestConfig& t) {
  Section test(value, "test", origin);
  test.read_integer("batch_size", t.batch_size, 1);
  test.read<std::vector<int64_t>>("input_patch_size", t.input_patch_size);
  test.read_integer("num_workers", t.num_workers, 0);
  test.read("mirror", t.mirror);
  int64_t eval_every = 1;  // the reference's test schedule during training: not used
  test.read_integer("eval_every", eval_every, 1);
  std::vector<std::string> outputs;
  test.read("extra_output_names", outputs);
  for (const auto& output : outputs) {
    TORCH_CHECK(output == "logit_mean" || output == "cov_diag" || output == "cov_factor", origin,
                ": test.extra_output_names: unknown output \"", output,
                "\" (expected logit_mean, cov_diag, cov_factor)");
  }
}

void parse_loss(const json& value, const std::string& origin, const ModelConfig& model,
                LossConfig& l) {
  if (!value.empty()) {
    Section loss(value, "loss", origin);
    const auto [name, options] =
        loss.named({"StochasticSegmentationNetworkLossMCIntegral", "CrossEntropyLoss"});
    l.kind = name == "CrossEntropyLoss" ? loss::LossKind::kCrossEntropy
                                        : loss::LossKind::kStochasticMcIntegral;
    Section o(options, "loss." + name, origin);
    if (l.kind == loss::LossKind::kStochasticMcIntegral) {
      o.read_integer("num_mc_samples", l.num_mc_samples, 2);
      TORCH_CHECK(l.num_mc_samples % 2 == 0, origin, ": loss.", name,
                  ".num_mc_samples must be even (antithetic pairs), got ", l.num_mc_samples);
      o.read("all_samples_weight", l.all_samples_weight);
      TORCH_CHECK(std::isfinite(l.all_samples_weight) && l.all_samples_weight >= 0, origin,
                  ": loss.", name, ".all_samples_weight must be a finite number >= 0, got ",
                  l.all_samples_weight);
    }
  }
  const bool stochastic = model.kind != nn::ModelKind::kDeterministic;
  const loss::LossKind needed =
      stochastic ? loss::LossKind::kStochasticMcIntegral : loss::LossKind::kCrossEntropy;
  TORCH_CHECK(l.kind == needed, origin, ": model ", model.name, " needs the loss ",
              to_string(needed), ", got ", to_string(l.kind));
}

void parse_optimizer(const json& value, const std::string& origin, OptimizerConfig& c) {
  if (value.empty()) return;
  Section optimizer(value, "optimizer", origin);
  const auto [name, options] = optimizer.named({"Adam", "RMSprop", "SGD"});
  c.kind = name == "Adam"      ? Optimizer::kAdam
           : name == "RMSprop" ? Optimizer::kRMSprop
                               : Optimizer::kSGD;
  Section o(options, "optimizer." + name, origin);
  o.read_number("lr", c.lr);
  o.read_number("weight_decay", c.weight_decay);
  if (c.kind != Optimizer::kAdam) o.read_number("momentum", c.momentum);
  if (c.kind == Optimizer::kRMSprop) o.read_number("alpha", c.alpha);
  o.read_number("covariance_lr_factor", c.covariance_lr_factor);
  TORCH_CHECK(c.lr > 0, origin, ": optimizer.", name, ".lr must be > 0, got ", c.lr);
  TORCH_CHECK(c.covariance_lr_factor > 0 && std::isfinite(c.covariance_lr_factor), origin,
              ": optimizer.", name, ".covariance_lr_factor must be > 0, got ",
              c.covariance_lr_factor);
}

void parse_scheduler(const json& value, const std::string& origin, SchedulerConfig& c) {
  if (value.empty()) return;
  Section scheduler(value, "scheduler", origin);
  const auto [name, options] = scheduler.named({"MultiStepLR", "CosineAnnealingLR"});
  Section o(options, "scheduler." + name, origin);
  if (name == "MultiStepLR") {
    c.kind = Scheduler::kMultiStepLR;
    o.read<std::vector<int64_t>>("milestones", c.milestones);
    o.read_number("gamma", c.gamma);
    return;
  }
  c.kind = Scheduler::kCosineAnnealingLR;
  TORCH_CHECK(options.contains("T_max"), origin,
              ": scheduler.CosineAnnealingLR.T_max is required (the epochs of a half period)");
  o.read_integer("T_max", c.t_max, 1);
  o.read_number("eta_min", c.eta_min);
  TORCH_CHECK(c.eta_min >= 0 && std::isfinite(c.eta_min), origin,
              ": scheduler.CosineAnnealingLR.eta_min must be >= 0, got ", c.eta_min);
}

}  // namespace

std::string to_string(Dataset dataset) { return dataset == Dataset::kCsv ? "csv" : "lidc"; }

std::string to_string(BestCriterion criterion) {
  return criterion == BestCriterion::kValGed ? "val_ged" : "val_loss";
}

std::string to_string(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kAdam:
      return "Adam";
    case Optimizer::kRMSprop:
      return "RMSprop";
    case Optimizer::kSGD:
      return "SGD";
  }
  return "unknown";
}

std::string to_string(loss::LossKind loss) {
  return loss == loss::LossKind::kCrossEntropy ? "CrossEntropyLoss"
                                               : "StochasticSegmentationNetworkLossMCIntegral";
}

Config parse_config(const json& root, const std::string& origin) {
  Config config;
  config.source = root;
  Section top(root, "config", origin);
  static const json empty = json::object();
  auto section = [&](const char* name) -> const json& {
    top.mark(name);
    return root.contains(name) ? root.at(name) : empty;
  };
  parse_model(section("model"), origin, config.model);
  parse_data(section("data"), origin, config.model, config.data);
  parse_training(section("training"), origin, config.model.dimensions, config.training);
  parse_valid(section("valid"), origin, config.valid);
  parse_test(section("test"), origin, config.test);
  parse_loss(section("loss"), origin, config.model, config.loss);
  parse_optimizer(section("optimizer"), origin, config.optimizer);
  parse_scheduler(section("scheduler"), origin, config.scheduler);
  return config;
}

Config load_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  TORCH_CHECK(in.good(), "cannot read the config file ", path.string());
  json root;
  try {
    root = json::parse(in);
  } catch (const json::parse_error& error) {
    TORCH_CHECK(false, path.string(), " is not valid JSON: ", error.what());
  }
  return parse_config(root, path.string());
}

std::vector<std::string> differences(const json& a, const json& b) {
  std::vector<std::string> paths;
  for (const auto& operation : json::diff(a, b)) {
    const std::string path = operation.at("path").get<std::string>();
    if (paths.empty() || paths.back() != path) paths.push_back(path);
  }
  return paths;
}

}  // namespace ssn::config
