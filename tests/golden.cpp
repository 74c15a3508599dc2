#include "golden.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <vector>

namespace ssn::testing {
namespace {

void flatten(const nlohmann::json& value, std::vector<double>& out, std::vector<int64_t>& shape,
             size_t depth) {
  if (value.is_array()) {
    if (shape.size() == depth) {
      shape.push_back(static_cast<int64_t>(value.size()));
    } else if (shape[depth] != static_cast<int64_t>(value.size())) {
      throw std::runtime_error("golden: ragged nested list");
    }
    for (const auto& item : value) flatten(item, out, shape, depth + 1);
  } else if (value.is_null()) {
    out.push_back(std::numeric_limits<double>::quiet_NaN());
  } else {
    out.push_back(value.get<double>());
  }
}

}  // namespace

std::filesystem::path golden_dir() {
  if (const char* dir = std::getenv("SSN_GOLDEN_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  return SSN_DEFAULT_GOLDEN_DIR;
}

nlohmann::json load_golden(const std::string& name) {
  const auto path = golden_dir() / name;
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("golden file " + path.string() +
                             " cannot be read (set SSN_GOLDEN_DIR to the golden folder)");
  }
  return nlohmann::json::parse(in);
}

at::Tensor to_tensor(const nlohmann::json& value, at::ScalarType dtype) {
  std::vector<double> data;
  std::vector<int64_t> shape;
  flatten(value, data, shape, 0);
  return at::tensor(data, at::kDouble).reshape(shape).to(dtype);
}

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const c10::Error& error) {
    return error.what_without_backtrace();
  }
  return "<no error>";
}

double max_relative_error(const at::Tensor& actual, const at::Tensor& expected, double floor) {
  EXPECT_EQ(actual.sizes(), expected.sizes());
  if (actual.sizes() != expected.sizes() || expected.numel() == 0) {
    return actual.sizes() == expected.sizes() ? 0.0 : std::numeric_limits<double>::infinity();
  }
  const at::Tensor a = actual.to(at::kDouble);
  const at::Tensor e = expected.to(at::kDouble);
  return ((a - e).abs() / e.abs().clamp_min(floor)).max().item<double>();
}

}  // namespace ssn::testing
