#pragma once

// Reads the golden test vectors from $SSN_GOLDEN_DIR (default tests/data/golden, the project's copy
// in the repository), so the same tests run on any folder of files with the same schema.

#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace ssn::testing {

/// The folder of golden files: $SSN_GOLDEN_DIR, else SSN_DEFAULT_GOLDEN_DIR set by CMake.
std::filesystem::path golden_dir();

/// Parses golden_dir()/name; fails the test with the path when it is missing or malformed.
nlohmann::json load_golden(const std::string& name);

/// A nested JSON list of numbers (null = NaN) -> a tensor of that shape and dtype.
at::Tensor to_tensor(const nlohmann::json& value, at::ScalarType dtype = at::kDouble);

/// The message (without backtrace) of the c10::Error `call` throws, or "<no error>".
std::string error_of(const std::function<void()>& call);

/// max |actual - expected| / max(|expected|, floor) over all elements.
double max_relative_error(const at::Tensor& actual, const at::Tensor& expected,
                          double floor = 1e-12);

}  // namespace ssn::testing
