#pragma once

// Dynamic loss scaling for fp16 training (training.precision = "fp16"), as torch.cuda.amp's
// GradScaler does it: the loss is multiplied by a scale before backward; before the optimiser
// step the gradients are divided by it and checked; a step with a non-finite gradient is skipped
// and the scale halved; after `growth_interval` finite steps in a row the scale doubles.

#include <torch/optim/optimizer.h>

namespace ssn::train {

struct GradScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;  ///< finite steps since the scale last changed
};

class GradScaler {
 public:
  /// Disabled: scale() returns the loss and step() only steps.
  explicit GradScaler(bool enabled, int64_t growth_interval = 2000);

  bool enabled() const { return enabled_; }
  /// loss * scale (the loss itself when disabled).
  torch::Tensor scale(const torch::Tensor& loss) const;
  /// Unscales the gradients of `optimizer`'s parameters; steps when they are all finite and
  /// returns true, else skips the step and returns false. Then updates the scale.
  bool step(torch::optim::Optimizer& optimizer);

  const GradScalerState& state() const { return state_; }
  void set_state(const GradScalerState& state) { state_ = state; }

 private:
  bool enabled_;
  int64_t growth_interval_;
  GradScalerState state_;
};

}  // namespace ssn::train
