#pragma once

#include <ATen/ATen.h>

#include <filesystem>

namespace ssn::io {

/// True when ssn was built with ITK (SSN_WITH_ITK), which provides the image codecs.
bool image_io_available();

/// Writes rgb [H, W, 3] uint8 as a PNG, atomically. Throws a c10::Error naming the path on failure.
void write_rgb_png(const std::filesystem::path& path, const at::Tensor& rgb);

}  // namespace ssn::io
