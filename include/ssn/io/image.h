#pragma once

// Label maps and scalar images on disk through ITK: PNG for 2-D, NIfTI (.nii, .nii.gz), NRRD and
// MetaImage for 2-D or 3-D. Tensors are indexed [H, W] or [D, H, W] (ITK's x is the last index).

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

namespace ssn::io {

/// Where an image's voxels sit in the world, per ITK axis (x first, the tensor's last index):
/// spacing and origin in mm and the direction cosines (row-major, dims x dims). Empty vectors mean
/// the default (spacing 1, origin 0, identity).
struct Geometry {
  std::vector<double> spacing;
  std::vector<double> origin;
  std::vector<double> direction;

  bool empty() const { return spacing.empty(); }
  /// Equal within 1e-6 relative (NIfTI stores float32).
  bool matches(const Geometry& other) const;
  /// "spacing (1, 1, 2), origin (...), direction (...)" for error messages.
  std::string describe() const;
  /// The geometry of the first `axes` ITK axes (a case's geometry from its [C, *spatial] maps).
  Geometry leading(size_t axes) const;
};

/// An image and its geometry.
struct Image {
  at::Tensor pixels;
  Geometry geometry;
};

/// The geometry of an image file, from its header alone.
Geometry read_geometry(const std::filesystem::path& path);

/// read_image plus the geometry of the file.
Image read_image_with_geometry(const std::filesystem::path& path);

/// Reads a single-channel image of integer labels -> int64 [H, W] or [D, H, W]. Throws a
/// c10::Error naming the path when the file is missing, unreadable, multi-channel or of another
/// dimension than 2 or 3.
at::Tensor read_label_image(const std::filesystem::path& path);

/// Writes labels [H, W] or [D, H, W] (values in [0, 255]) as uint8, atomically; the format follows
/// the extension (.png for 2-D only).
void write_label_image(const std::filesystem::path& path, const at::Tensor& labels,
                       const Geometry& geometry = {});

/// Writes values [H, W] or [D, H, W] (integers in [0, 65535]) as unsigned 16-bit, atomically
/// (16-bit grey PNG for .png): read_image gives them back exactly, as int32.
void write_uint16_image(const std::filesystem::path& path, const at::Tensor& values);

/// Reads any single-channel image of 2 to 4 dimensions in its stored pixel type (unsigned 16/32-bit
/// widened to int32/int64) -> [*reversed ITK size], e.g. [C, H, W] for a 3-D file.
at::Tensor read_image(const std::filesystem::path& path);

/// Reads a map of C channels -> [C, *spatial]: a vector image (C components per voxel, as
/// SimpleITK writes the reference's prediction maps) or a scalar image with the channel as its
/// slowest axis (as ssn writes them, read as read_image reads it).
at::Tensor read_channels(const std::filesystem::path& path);

/// Writes a floating-point tensor of 2 to 4 dimensions as float32, atomically (NIfTI, NRRD or
/// MetaImage by extension). The first tensor dimension becomes the last (slowest) image axis, so
/// maps [C, H, W] round-trip exactly through read_image. A geometry of fewer axes than the image
/// (a case's geometry for its [C, *spatial] maps) is extended by spacing 1, origin 0 and identity.
void write_float_image(const std::filesystem::path& path, const at::Tensor& values,
                       const Geometry& geometry = {});

}  // namespace ssn::io
