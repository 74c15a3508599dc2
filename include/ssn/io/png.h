#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <string>

namespace ssn::io {

/// True when ssn was built with ITK (SSN_WITH_ITK), which provides the image codecs.
bool image_io_available();

/// Writes rgb [H, W, 3] uint8 as a PNG, atomically. Throws a c10::Error naming the path on failure.
void write_rgb_png(const std::filesystem::path& path, const at::Tensor& rgb);

/// rgb [H, W, 3] uint8 -> the PNG file's bytes in base64, for data: URIs in self-contained HTML.
std::string rgb_png_base64(const at::Tensor& rgb);

}  // namespace ssn::io
