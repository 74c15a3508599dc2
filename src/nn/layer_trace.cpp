#include "ssn/nn/layer_trace.h"

namespace ssn::nn {
namespace {

thread_local LayerTrace* current = nullptr;

}  // namespace

LayerTrace::LayerTrace() : previous_(current) { current = this; }

LayerTrace::~LayerTrace() { current = previous_; }

LayerTrace* LayerTrace::active() { return current; }

void LayerTrace::record(const torch::nn::Module& layer, const torch::Tensor& output) {
  LayerRecord r;
  r.type = short_type_name(layer);
  r.output_shape = output.sizes().vec();
  for (const auto& p : layer.parameters()) r.parameters += p.numel();
  r.module = &layer;
  records_.push_back(std::move(r));
}

void LayerTrace::record(std::string name, std::string type, const torch::Tensor& output) {
  records_.push_back({std::move(name), std::move(type), output.sizes().vec(), 0, nullptr});
}

torch::Tensor traced_forward(torch::nn::SequentialImpl& seq, torch::Tensor x) {
  LayerTrace* trace = LayerTrace::active();
  if (trace == nullptr) return seq.forward(x);
  for (auto& layer : seq) {
    x = layer.forward(x);
    trace->record(*layer.ptr(), x);
  }
  return x;
}

std::string short_type_name(const torch::nn::Module& module) {
  std::string name = module.name();
  for (const std::string prefix : {"torch::nn::", "ssn::nn::"}) {
    if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  }
  if (const auto impl = name.find("Impl"); impl != std::string::npos) name.erase(impl, 4);
  return name;
}

}  // namespace ssn::nn
