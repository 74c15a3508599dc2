// No image codecs (SSN_WITH_ITK=OFF, e.g. a GPU machine without ITK): every read or write of an
// image file is an error that says why.

#include <c10/util/Exception.h>

#include "codec.h"

namespace ssn::io::detail {
namespace {

[[noreturn]] void unavailable(const std::string& what, const std::filesystem::path& path) {
  TORCH_CHECK(false, "cannot ", what, " ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
}

}  // namespace

bool codecs_available() { return false; }

Geometry read_geometry(const std::filesystem::path& path) { unavailable("read", path); }

at::Tensor read_image(const std::filesystem::path& path) { unavailable("read", path); }

at::Tensor read_channels(const std::filesystem::path& path) { unavailable("read", path); }

void write_labels(const std::filesystem::path& path, const at::Tensor&, const Geometry&) {
  unavailable("write", path);
}

void write_uint16(const std::filesystem::path& path, const at::Tensor&) {
  unavailable("write", path);
}

void write_floats(const std::filesystem::path& path, const at::Tensor&, const Geometry&) {
  unavailable("write", path);
}

void write_rgb_png(const std::filesystem::path& path, const at::Tensor&) {
  unavailable("write", path);
}

std::string rgb_png_base64(const at::Tensor&) {
  TORCH_CHECK(false, "cannot encode a PNG: ssn was built without ITK (SSN_WITH_ITK=OFF)");
}

}  // namespace ssn::io::detail
