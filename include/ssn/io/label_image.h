#pragma once

// Label maps and scalar images on disk through ITK: PNG for 2-D, NIfTI (.nii, .nii.gz), NRRD and
// MetaImage for 2-D or 3-D. Tensors are indexed [H, W] or [D, H, W] (ITK's x is the last index).

#include <ATen/ATen.h>

#include <filesystem>

namespace ssn::io {

/// Reads a single-channel image of integer labels -> int64 [H, W] or [D, H, W]. Throws a
/// c10::Error naming the path when the file is missing, unreadable, multi-channel or of another
/// dimension than 2 or 3.
at::Tensor read_label_image(const std::filesystem::path& path);

/// Writes labels [H, W] or [D, H, W] (values in [0, 255]) as uint8, atomically; the format follows
/// the extension (.png for 2-D only).
void write_label_image(const std::filesystem::path& path, const at::Tensor& labels);

}  // namespace ssn::io
