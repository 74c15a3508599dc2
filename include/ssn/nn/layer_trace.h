#pragma once

// What `ssn model` prints: while a LayerTrace lives on a thread, the backbones and heads record
// the output shape of each layer their forward pass runs (the LibTorch C++ API has no forward
// hooks). Without one, forward passes run as usual and record nothing.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <string>
#include <vector>

namespace ssn::nn {

/// One layer of a forward pass: a module of the model (qualified name, type, its parameters) or a
/// parameter-free operation (pooling, upsampling, concatenation: named after its place).
struct LayerRecord {
  std::string name;
  std::string type;
  std::vector<int64_t> output_shape;
  int64_t parameters = 0;
  /// The module, for naming it against the model's named_modules(); null for an operation.
  const torch::nn::Module* module = nullptr;
};

class LayerTrace {
 public:
  LayerTrace();
  ~LayerTrace();
  LayerTrace(const LayerTrace&) = delete;
  LayerTrace& operator=(const LayerTrace&) = delete;

  /// The trace of this thread, or null.
  static LayerTrace* active();
  /// Records a module's output (its name is resolved by the caller of the trace).
  void record(const torch::nn::Module& layer, const torch::Tensor& output);
  /// Records a parameter-free operation.
  void record(std::string name, std::string type, const torch::Tensor& output);

  const std::vector<LayerRecord>& records() const { return records_; }

 private:
  std::vector<LayerRecord> records_;
  LayerTrace* previous_;
};

/// seq.forward(x), recording each of its layers when a trace is active.
torch::Tensor traced_forward(torch::nn::SequentialImpl& seq, torch::Tensor x);

/// "torch::nn::Conv2dImpl" -> "Conv2d", "ssn::nn::PreActBlockImpl<3>" -> "PreActBlock<3>".
std::string short_type_name(const torch::nn::Module& module);

}  // namespace ssn::nn
