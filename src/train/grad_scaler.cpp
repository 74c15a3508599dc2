#include "ssn/train/grad_scaler.h"

#include <ATen/ATen.h>

namespace ssn::train {

GradScaler::GradScaler(bool enabled, int64_t growth_interval)
    : enabled_(enabled), growth_interval_(growth_interval) {
  TORCH_CHECK(growth_interval >= 1, "GradScaler: growth_interval must be >= 1");
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return enabled_ ? loss * state_.scale : loss;
}

bool GradScaler::step(torch::optim::Optimizer& optimizer) {
  if (!enabled_) {
    optimizer.step();
    return true;
  }
  // One flag for all gradients, read once: a single device synchronisation per step.
  std::vector<at::Tensor> finite_flags;
  const double inverse = 1.0 / state_.scale;
  for (auto& group : optimizer.param_groups()) {
    for (auto& parameter : group.params()) {
      at::Tensor& grad = parameter.mutable_grad();
      if (!grad.defined()) continue;
      grad.mul_(inverse);
      finite_flags.push_back(at::isfinite(grad).all());
    }
  }
  const bool finite = finite_flags.empty() || at::stack(finite_flags).all().item<bool>();
  if (finite) {
    optimizer.step();
    if (++state_.growth_tracker >= growth_interval_) {
      state_.scale *= 2.0;
      state_.growth_tracker = 0;
    }
  } else {
    state_.scale *= 0.5;
    state_.growth_tracker = 0;
  }
  return finite;
}

}  // namespace ssn::train
