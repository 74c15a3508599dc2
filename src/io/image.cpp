#include "ssn/io/image.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "codec.h"

namespace ssn::io {

bool Geometry::matches(const Geometry& other) const {
  const auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::abs(a[i] - b[i]) > 1e-6 * std::max(1.0, std::abs(a[i]) + std::abs(b[i]))) {
        return false;
      }
    }
    return true;
  };
  return close(spacing, other.spacing) && close(origin, other.origin) &&
         close(direction, other.direction);
}

std::string Geometry::describe() const {
  const auto list = [](const std::vector<double>& values) {
    std::ostringstream out;
    out << "(";
    for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
    return out.str() + ")";
  };
  return "spacing " + list(spacing) + ", origin " + list(origin) + ", direction " + list(direction);
}

Geometry read_geometry(const std::filesystem::path& path) { return detail::read_geometry(path); }

Geometry Geometry::leading(size_t axes) const {
  if (empty() || spacing.size() <= axes) return *this;
  Geometry out;
  const size_t n = spacing.size();
  for (size_t i = 0; i < axes; ++i) {
    out.spacing.push_back(spacing[i]);
    out.origin.push_back(origin[i]);
    for (size_t j = 0; j < axes; ++j) out.direction.push_back(direction[i * n + j]);
  }
  return out;
}

Image read_image_with_geometry(const std::filesystem::path& path) {
  return {read_image(path), read_geometry(path)};
}

at::Tensor read_image(const std::filesystem::path& path) { return detail::read_image(path); }

at::Tensor read_channels(const std::filesystem::path& path) { return detail::read_channels(path); }

at::Tensor read_label_image(const std::filesystem::path& path) {
  const at::Tensor pixels = read_image(path);
  TORCH_CHECK(pixels.dim() == 2 || pixels.dim() == 3, "cannot read ", path.string(),
              " as a label map: expected a 2-D or 3-D image, got ", pixels.dim(), " dimensions");
  if (at::isFloatingType(pixels.scalar_type())) {
    TORCH_CHECK(pixels.numel() == 0 || pixels.eq(pixels.round()).all().item<bool>(), "cannot read ",
                path.string(), " as a label map: it holds non-integer values");
  }
  return pixels.to(at::kLong);
}

void write_label_image(const std::filesystem::path& path, const at::Tensor& labels,
                       const Geometry& geometry) {
  TORCH_CHECK(labels.dim() == 2 || labels.dim() == 3, "cannot write ", path.string(),
              ": expected labels [H, W] or [D, H, W], got ", labels.sizes());
  TORCH_CHECK(labels.numel() == 0 ||
                  (labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() <= 255),
              "cannot write ", path.string(), ": labels must lie in [0, 255]");
  detail::write_labels(path, labels.to(at::kByte).contiguous(), geometry);
}

void write_uint16_image(const std::filesystem::path& path, const at::Tensor& values) {
  TORCH_CHECK(values.dim() == 2 || values.dim() == 3, "cannot write ", path.string(),
              ": expected values [H, W] or [D, H, W], got ", values.sizes());
  const at::Tensor v = values.to(at::kInt);
  TORCH_CHECK(v.numel() == 0 || (v.min().item<int64_t>() >= 0 && v.max().item<int64_t>() <= 65535),
              "cannot write ", path.string(), ": values must lie in [0, 65535]");
  // The bits of uint16 in an int16 tensor (ATen of this version has no uint16 type).
  detail::write_uint16(path, at::where(v >= 32768, v - 65536, v).to(at::kShort).contiguous());
}

void write_float_image(const std::filesystem::path& path, const at::Tensor& values,
                       const Geometry& geometry) {
  TORCH_CHECK(values.dim() >= 2 && values.dim() <= 4 && at::isFloatingType(values.scalar_type()),
              "cannot write ", path.string(),
              ": expected a floating-point tensor of 2 to 4 dimensions, got ", values.sizes(), " ",
              values.scalar_type());
  TORCH_CHECK(at::isfinite(values).all().item<bool>(), "cannot write ", path.string(),
              ": the values hold NaN or infinite values");
  detail::write_floats(path, values.to(at::kFloat).contiguous(), geometry);
}

}  // namespace ssn::io
