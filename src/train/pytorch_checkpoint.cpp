#include "ssn/train/pytorch_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <map>
#include <set>

#include "ssn/train/checkpoint.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;

std::string shape_of(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

// A low-rank DeepMedic with the factor conv's bias: the one ssn model the reference has a class
// for (StochasticDeepMedic).
bool has_reference_class(const std::vector<std::string>& ssn_names) {
  bool deepmedic = false, factor = false, factor_bias = false;
  for (const std::string& name : ssn_names) {
    deepmedic |= name.rfind("backbone.fully_connected.", 0) == 0;
    factor |= name == "head.cov_factor_l.weight";
    factor_bias |= name == "head.cov_factor_l.bias";
  }
  return deepmedic && factor && factor_bias;
}

}  // namespace

std::string reference_name(const std::string& ssn_name) {
  for (const std::string prefix : {"backbone.", "head."}) {
    if (ssn_name.rfind(prefix, 0) == 0) return ssn_name.substr(prefix.size());
  }
  return ssn_name;
}

ImportSummary import_pytorch_checkpoint(const fs::path& pytorch, const config::Config& config,
                                        const fs::path& out, uint64_t seed) {
  const std::string file = pytorch.string();
  ImportSummary summary;
  const std::vector<io::NamedTensor> tensors = io::read_torch_state_dict(pytorch, &summary.entry);
  std::map<std::string, const io::NamedTensor*> by_name;
  bool ssn_naming = false;
  for (const io::NamedTensor& t : tensors) {
    by_name[t.name] = &t;
    ssn_naming |= t.name.rfind("backbone.", 0) == 0;
  }
  summary.naming = ssn_naming ? PytorchNaming::kSsn : PytorchNaming::kReference;
  const std::string naming_text = ssn_naming ? "ssn's names" : "the reference's names";

  torch::manual_seed(seed);  // as ssn train: the optimiser's and generators' starting state
  nn::SegmentationModel model = build_model(config.model);
  std::set<std::string> used;
  {
    torch::NoGradGuard no_grad;
    auto assign = [&](const std::string& ssn_name, torch::Tensor& target) {
      const std::string name = ssn_naming ? ssn_name : reference_name(ssn_name);
      const auto found = by_name.find(name);
      TORCH_CHECK(found != by_name.end(), file, " has no tensor ", name,
                  name == ssn_name ? std::string() : " (ssn's " + ssn_name + ")",
                  ", which ssn's model of this config needs (the file uses ", naming_text,
                  "): is the config the one the checkpoint was trained with?");
      const at::Tensor& source = found->second->tensor;
      TORCH_CHECK(source.sizes() == target.sizes(), file, ": tensor ", name, " has shape ",
                  shape_of(source.sizes()), ", the config's model needs ",
                  shape_of(target.sizes()));
      TORCH_CHECK(source.is_floating_point() == target.is_floating_point(), file, ": tensor ", name,
                  " is ", c10::toString(source.scalar_type()), ", the model's is ",
                  c10::toString(target.scalar_type()));
      target.copy_(source);
      used.insert(name);
    };
    for (auto& item : model->named_parameters()) assign(item.key(), item.value());
    for (auto& item : model->named_buffers()) assign(item.key(), item.value());
  }
  for (const io::NamedTensor& t : tensors) {
    TORCH_CHECK(used.count(t.name) > 0, file, " has a tensor ", t.name, " ",
                shape_of(t.tensor.sizes()),
                " that ssn's model of this config does not have (a different architecture, "
                "kind or rank?)");
  }
  summary.tensors = used.size();
  const auto optimizer = build_optimizer(config.optimizer, *model);
  TrainingState state;
  state.data_rng = at::detail::createCPUGenerator(seed).get_state();
  state.noise_rng = at::detail::createCPUGenerator(seed + 1).get_state();
  state.torch_rng = at::detail::getDefaultCPUGenerator().get_state();
  save_checkpoint(out, *model, *optimizer, state);
  return summary;
}

ExportSummary export_pytorch_checkpoint(const fs::path& checkpoint, const fs::path& out) {
  std::vector<io::NamedTensor> tensors = read_checkpoint_weights(checkpoint);
  std::vector<std::string> names;
  for (const io::NamedTensor& t : tensors) names.push_back(t.name);
  ExportSummary summary;
  summary.tensors = tensors.size();
  if (has_reference_class(names)) {
    summary.naming = PytorchNaming::kReference;
    for (io::NamedTensor& t : tensors) t.name = reference_name(t.name);
  }
  io::write_torch_state_dict(out, tensors);
  return summary;
}

}  // namespace ssn::train
