#include "ssn/train/model_summary.h"

#include <torch/nn/module.h>

#include <map>

#include "ssn/nn/layer_trace.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {

nlohmann::json summarize_model(const config::Config& config) {
  nn::SegmentationModel model = build_model(config.model);
  model->eval();
  std::vector<int64_t> spatial;
  if (config.data.dataset == config::Dataset::kLidc) {
    spatial.assign(static_cast<size_t>(config.model.dimensions), config.data.size);
  } else if (!config.training.input_patch_size.empty()) {
    spatial = config.training.input_patch_size;
  } else {
    spatial.assign(static_cast<size_t>(config.model.dimensions),
                   model->backbone().input_size_for(1));
  }
  TORCH_CHECK(static_cast<int64_t>(spatial.size()) == config.model.dimensions,
              "model: the input size ", nlohmann::json(spatial).dump(), " does not have ",
              config.model.dimensions, " spatial axes");
  std::vector<int64_t> input_shape = {1, config.model.input_channels};
  input_shape.insert(input_shape.end(), spatial.begin(), spatial.end());

  std::map<const torch::nn::Module*, std::string> names;
  for (const auto& item : model->named_modules()) names[item.value().get()] = item.key();
  nn::LayerTrace trace;
  {
    torch::NoGradGuard no_grad;
    model->forward(torch::zeros(input_shape));
  }

  nlohmann::json summary;
  summary["model"] = config.model.name;
  summary["input_shape"] = input_shape;
  int64_t parameters = 0, trainable = 0, buffers = 0;
  for (const auto& p : model->parameters()) {
    parameters += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  for (const auto& b : model->buffers()) buffers += b.numel();
  summary["parameters"] = parameters;
  summary["trainable_parameters"] = trainable;
  summary["buffers"] = buffers;
  summary["layers"] = nlohmann::json::array();
  int64_t listed = 0;
  for (const nn::LayerRecord& r : trace.records()) {
    std::string name = r.name;
    if (r.module != nullptr) {
      const auto found = names.find(r.module);
      name = found != names.end() ? found->second : "?";
    }
    summary["layers"].push_back({{"name", name},
                                 {"type", r.type},
                                 {"output_shape", r.output_shape},
                                 {"parameters", r.parameters}});
    listed += r.parameters;
  }
  // Every parameter belongs to a layer the forward pass ran, or the table would hide some.
  TORCH_CHECK(listed == parameters, "model: the layers listed hold ", listed,
              " parameters, the model ", parameters, " (a layer ran without being recorded)");
  return summary;
}

}  // namespace ssn::train
