#include "ssn/io/png.h"

#include "codec.h"

namespace ssn::io {

bool image_io_available() { return detail::codecs_available(); }

namespace {

void check_rgb(const at::Tensor& rgb, const std::string& what) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == at::kByte, "cannot ", what,
              ": expected an RGB image [H, W, 3] of uint8, got ", rgb.sizes(), " ",
              rgb.scalar_type());
}

}  // namespace

void write_rgb_png(const std::filesystem::path& path, const at::Tensor& rgb) {
  check_rgb(rgb, "write " + path.string());
  detail::write_rgb_png(path, rgb.contiguous().cpu());
}

std::string rgb_png_base64(const at::Tensor& rgb) {
  check_rgb(rgb, "encode a PNG");
  return detail::rgb_png_base64(rgb.contiguous().cpu());
}

}  // namespace ssn::io
