#include "ssn/runtime/precision.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

namespace ssn::runtime {
namespace {

// LibTorch 2.4 replaced the per-device autocast functions with ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(c10::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
void set_autocast_enabled(c10::DeviceType type, bool on) {
  at::autocast::set_autocast_enabled(type, on);
}
c10::ScalarType autocast_type(c10::DeviceType type) {
  return at::autocast::get_autocast_dtype(type);
}
void set_autocast_type(c10::DeviceType type, c10::ScalarType scalar) {
  at::autocast::set_autocast_dtype(type, scalar);
}
#else
bool autocast_enabled(c10::DeviceType type) {
  return type == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
void set_autocast_enabled(c10::DeviceType type, bool on) {
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
}
c10::ScalarType autocast_type(c10::DeviceType type) {
  return type == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                      : at::autocast::get_autocast_gpu_dtype();
}
void set_autocast_type(c10::DeviceType type, c10::ScalarType scalar) {
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_autocast_cpu_dtype(scalar);
  } else {
    at::autocast::set_autocast_gpu_dtype(scalar);
  }
}
#endif

c10::ScalarType scalar_type(Precision precision) {
  return precision == Precision::kBf16 ? c10::kBFloat16 : c10::kHalf;
}

}  // namespace

std::string to_string(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
  }
  return "?";
}

Precision parse_precision(const std::string& text, const std::string& what) {
  for (Precision p : {Precision::kFp32, Precision::kBf16, Precision::kFp16}) {
    if (text == to_string(p)) return p;
  }
  TORCH_CHECK(false, what, ": expected fp32, bf16 or fp16, got \"", text, "\"");
}

bool cpu_has_native_bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

void check_precision_supported(Precision precision, const c10::Device& device) {
  if (precision == Precision::kFp32) return;
  if (device.is_cpu()) {
    TORCH_CHECK(precision != Precision::kFp16,
                "precision fp16 needs a CUDA device (LibTorch's CPU autocast has no float16); "
                "on the CPU use bf16 where the CPU has it, or fp32");
    TORCH_CHECK(cpu_has_native_bf16(),
                "precision bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16), so "
                "bf16 would be slower than fp32; use fp32");
    return;
  }
  TORCH_CHECK(device.is_cuda(), "precision ", to_string(precision), ": device ", device.str(),
              " has no autocast; use cpu or cuda");
  // A bfloat16 or float16 convolution on the device: refused by devices that cannot run it.
  try {
    const at::Tensor x =
        at::ones({1, 1, 4, 4}, at::TensorOptions(device).dtype(scalar_type(precision)));
    (void)at::conv2d(x, x.narrow(2, 0, 3).narrow(3, 0, 3)).sum().item<float>();
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "precision ", to_string(precision), " cannot run on ", device.str(), ": ",
                error.what_without_backtrace());
  }
}

AutocastGuard::AutocastGuard(Precision precision, c10::DeviceType device_type)
    : device_type_(device_type), previous_type_(c10::kFloat) {
  if (precision == Precision::kFp32) return;
  TORCH_CHECK(device_type == c10::DeviceType::CPU || device_type == c10::DeviceType::CUDA,
              "autocast: device type ", device_type, " is neither CPU nor CUDA");
  active_ = true;
  previous_enabled_ = autocast_enabled(device_type);
  previous_type_ = autocast_type(device_type);
  set_autocast_type(device_type, scalar_type(precision));
  set_autocast_enabled(device_type, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The weights' casts are cached while autocast is on; the cache goes with the outermost region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_type_, previous_enabled_);
  set_autocast_type(device_type_, previous_type_);
}

AutocastOff::AutocastOff()
    : cpu_(autocast_enabled(c10::DeviceType::CPU)), cuda_(autocast_enabled(c10::DeviceType::CUDA)) {
  if (cpu_) set_autocast_enabled(c10::DeviceType::CPU, false);
  if (cuda_) set_autocast_enabled(c10::DeviceType::CUDA, false);
}

AutocastOff::~AutocastOff() {
  if (cpu_) set_autocast_enabled(c10::DeviceType::CPU, true);
  if (cuda_) set_autocast_enabled(c10::DeviceType::CUDA, true);
}

}  // namespace ssn::runtime
