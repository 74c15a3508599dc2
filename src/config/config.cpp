#include "ssn/config/config.h"

#include <c10/util/Exception.h>

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

}  // namespace

Config parse_config(const json& root, const std::string& origin) {
  Config config;
  config.source = root;
  Section top(root, "config", origin);
  static const json empty = json::object();
  auto section = [&](const char* name) -> const json& {
    top.mark(name);
    return root.contains(name) ? root.at(name) : empty;
  };

  {
    Section model(section("model"), "model", origin);
    const auto [name, options] = model.named({"StochasticUNet", "UNet"});
    ModelConfig& m = config.model;
    m.name = name;
    Section o(options, "model." + name, origin);
    o.read_integer("input_channels", m.input_channels, 1);
    o.read_integer("num_classes", m.num_classes, 2);
    o.read<std::vector<int64_t>>("filters", m.filters);
    o.read_integer("convs_per_level", m.convs_per_level, 1);
    std::string normalisation = "batch";
    o.read("normalisation", normalisation);
    m.normalisation = nn::parse_normalisation(normalisation);
    if (name == "UNet") {
      m.kind = nn::ModelKind::kDeterministic;
      m.rank = 0;
    } else {
      o.read_integer("rank", m.rank, 0);
      o.read_number("epsilon", m.epsilon);
      o.read_number("log_diag_bias", m.log_diag_bias);
      o.read_number("factor_init_scale", m.factor_init_scale);
      m.kind = m.rank == 0 ? nn::ModelKind::kDiagonal : nn::ModelKind::kLowRank;
    }
  }
  {
    Section data(section("data"), "data", origin);
    data.read("dataset", config.data.dataset);
    TORCH_CHECK(config.data.dataset == "lidc", origin, ": data.dataset must be \"lidc\", got \"",
                config.data.dataset, "\"");
    data.read_integer("crop", config.data.crop, 1);
    data.read_integer("size", config.data.size, 1);
    data.read_integer("annotators", config.data.annotators, 1);
    TORCH_CHECK(config.data.crop % config.data.size == 0, origin, ": data.crop (", config.data.crop,
                ") must be a multiple of data.size (", config.data.size, ")");
  }
  {
    Section training(section("training"), "training", origin);
    training.read_integer("batch_size", config.training.batch_size, 1);
    training.read_integer("num_epochs", config.training.num_epochs, 0);
    training.read_integer("mean_only_epochs", config.training.mean_only_epochs, 0);
    training.read("augment", config.training.augment);
    training.read_integer("max_bad_steps", config.training.max_bad_steps, 0);
  }
  {
    Section valid(section("valid"), "valid", origin);
    valid.read_integer("eval_every", config.valid.eval_every, 1);
    valid.read_integer("num_cases", config.valid.num_cases, 1);
    valid.read_integer("num_samples", config.valid.num_samples, 1);
  }
  {
    const json& loss_json = section("loss");
    if (!loss_json.empty()) {
      Section loss(loss_json, "loss", origin);
      const auto [name, options] =
          loss.named({"StochasticSegmentationNetworkLossMCIntegral", "CrossEntropyLoss"});
      config.loss.name = name;
      Section o(options, "loss." + name, origin);
      if (name != "CrossEntropyLoss") {
        o.read_integer("num_mc_samples", config.loss.num_mc_samples, 2);
        TORCH_CHECK(config.loss.num_mc_samples % 2 == 0, origin, ": loss.", name,
                    ".num_mc_samples must be even (antithetic pairs), got ",
                    config.loss.num_mc_samples);
      }
    }
    const bool stochastic = config.model.kind != nn::ModelKind::kDeterministic;
    TORCH_CHECK(stochastic == (config.loss.name != "CrossEntropyLoss"), origin, ": model ",
                config.model.name, " needs the loss ",
                stochastic ? "StochasticSegmentationNetworkLossMCIntegral" : "CrossEntropyLoss",
                ", got ", config.loss.name);
  }
  {
    const json& optimizer_json = section("optimizer");
    if (!optimizer_json.empty()) {
      Section optimizer(optimizer_json, "optimizer", origin);
      const auto [name, options] = optimizer.named({"Adam", "RMSprop", "SGD"});
      config.optimizer.name = name;
      Section o(options, "optimizer." + name, origin);
      o.read_number("lr", config.optimizer.lr);
      o.read_number("weight_decay", config.optimizer.weight_decay);
      if (name != "Adam") o.read_number("momentum", config.optimizer.momentum);
      TORCH_CHECK(config.optimizer.lr > 0, origin, ": optimizer.", name, ".lr must be > 0, got ",
                  config.optimizer.lr);
    }
  }
  {
    const json& scheduler_json = section("scheduler");
    if (!scheduler_json.empty()) {
      Section scheduler(scheduler_json, "scheduler", origin);
      const auto [name, options] = scheduler.named({"MultiStepLR"});
      Section o(options, "scheduler." + name, origin);
      o.read<std::vector<int64_t>>("milestones", config.scheduler.milestones);
      o.read_number("gamma", config.scheduler.gamma);
    }
  }
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

}  // namespace ssn::config
