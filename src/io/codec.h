#pragma once

// The image codecs behind io/image.h and io/png.h, in one of two files chosen by CMake:
// codec_itk.cpp (ITK: PNG, NIfTI, NRRD, MetaImage) or codec_none.cpp (SSN_WITH_ITK=OFF: every
// call is an error that says so). Arguments are checked by the callers.

#include <ATen/ATen.h>

#include <filesystem>
#include <string>

#include "ssn/io/image.h"

namespace ssn::io::detail {

/// Whether this build has the codecs.
bool codecs_available();
Geometry read_geometry(const std::filesystem::path& path);
at::Tensor read_image(const std::filesystem::path& path);
/// read_image, and for vector images (C components per voxel) [C, *spatial].
at::Tensor read_channels(const std::filesystem::path& path);
/// labels [H, W] or [D, H, W] uint8.
void write_labels(const std::filesystem::path& path, const at::Tensor& labels,
                  const Geometry& geometry);
/// values [H, W] or [D, H, W] int16 holding the bits of unsigned 16-bit values.
void write_uint16(const std::filesystem::path& path, const at::Tensor& values);
/// values of 2 to 4 dimensions, float32.
void write_floats(const std::filesystem::path& path, const at::Tensor& values,
                  const Geometry& geometry);
/// rgb [H, W, 3] uint8, contiguous on the CPU.
void write_rgb_png(const std::filesystem::path& path, const at::Tensor& rgb);
/// The PNG encoding of rgb, base64.
std::string rgb_png_base64(const at::Tensor& rgb);

}  // namespace ssn::io::detail
