#pragma once

// Mixed precision: the floating-point type a backbone runs in (training.precision). The model
// keeps float32 weights; under an AutocastGuard LibTorch's autocast runs the convolutions and
// matrix products in the lower type and everything else in float32. The SSN head, the covariance,
// the Monte-Carlo samples and the loss always run in float32 (SegmentationModelImpl::forward
// leaves the autocast region before the head).

#include <c10/core/Device.h>

#include <string>

namespace ssn::runtime {

enum class Precision { kFp32, kBf16, kFp16 };

/// "fp32" | "bf16" | "fp16".
std::string to_string(Precision precision);
/// The inverse of to_string; throws naming `what` (e.g. "training.precision") and the choices.
Precision parse_precision(const std::string& text, const std::string& what);

/// Throws a c10::Error naming the precision and the device when `device` cannot run it:
/// fp16 needs CUDA (LibTorch's CPU autocast has no float16); bf16 on the CPU needs native
/// bfloat16 instructions (AVX512-BF16 or AMX), on CUDA a device that runs a bfloat16 convolution.
void check_precision_supported(Precision precision, const c10::Device& device);

/// Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16).
bool cpu_has_native_bf16();

/// Autocast on `device_type` in the precision's type while it lives (nothing for fp32); restores
/// the previous autocast state on destruction. The guard is per thread, as autocast is.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, c10::DeviceType device_type);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_type_;
  bool previous_enabled_ = false;
  c10::ScalarType previous_type_;
};

/// Autocast off on every device while it lives (the float32 region inside an autocast one).
class AutocastOff {
 public:
  AutocastOff();
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool cpu_ = false, cuda_ = false;
};

}  // namespace ssn::runtime
