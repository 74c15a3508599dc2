// ssn model: the network a config builds, layer by layer, with its parameter count.

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "flags.h"
#include "ssn/config/config.h"
#include "ssn/train/model_summary.h"

namespace ssn::cli {
namespace {

struct ModelFlags {
  std::string config_file;
  bool json = false;
};

std::string shape_text(const nlohmann::json& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i].get<int64_t>();
  out << "]";
  return out.str();
}

// 10320568 -> "10,320,568".
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n);
  for (int64_t i = static_cast<int64_t>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<size_t>(i), ",");
  }
  return digits;
}

void run_model(const ModelFlags& flags) {
  const nlohmann::json summary = train::summarize_model(config::load_config(flags.config_file));
  if (flags.json) {
    std::cout << summary.dump(2) << "\n";
    return;
  }
  size_t name_width = 5, type_width = 4;
  for (const auto& layer : summary["layers"]) {
    name_width = std::max(name_width, layer["name"].get<std::string>().size());
    type_width = std::max(type_width, layer["type"].get<std::string>().size());
  }
  std::printf("%s on an input of %s\n", summary["model"].get<std::string>().c_str(),
              shape_text(summary["input_shape"]).c_str());
  std::printf("%-*s  %-*s  %-24s  %12s\n", static_cast<int>(name_width), "layer",
              static_cast<int>(type_width), "type", "output shape", "parameters");
  for (const auto& layer : summary["layers"]) {
    std::printf("%-*s  %-*s  %-24s  %12s\n", static_cast<int>(name_width),
                layer["name"].get<std::string>().c_str(), static_cast<int>(type_width),
                layer["type"].get<std::string>().c_str(), shape_text(layer["output_shape"]).c_str(),
                grouped(layer["parameters"].get<int64_t>()).c_str());
  }
  std::printf("parameters: %s (trainable %s); buffers (batch norm statistics): %s\n",
              grouped(summary["parameters"].get<int64_t>()).c_str(),
              grouped(summary["trainable_parameters"].get<int64_t>()).c_str(),
              grouped(summary["buffers"].get<int64_t>()).c_str());
}

}  // namespace

void add_model_command(CLI::App& app) {
  auto flags = std::make_shared<ModelFlags>();
  CLI::App* command = app.add_subcommand(
      "model",
      "Print the network a config builds: every layer its forward pass runs, with its output\n"
      "shape for the config's input size (LIDC layout: data.size; volumes:\n"
      "training.input_patch_size) and its parameters, then the totals. Nothing is trained or\n"
      "written.");
  command->footer(
      "Examples:\n  ssn model --config-file configs/lidc_unet_rank10.json\n"
      "  ssn model --config-file configs/brats_deepmedic_rank10.json --json");
  command->add_option("--config-file", flags->config_file, "Training config (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_flag("--json", flags->json,
                    "Print JSON: model, input_shape, parameters, trainable_parameters, buffers, "
                    "layers [{name, type, output_shape, parameters}]");
  command->callback([flags]() { run_model(*flags); });
}

}  // namespace ssn::cli
