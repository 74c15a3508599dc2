#include "ssn/io/png.h"

#include "ssn/io/atomic_file.h"

#ifdef SSN_WITH_ITK
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkImportImageFilter.h>
#include <itkPNGImageIO.h>
#include <itkRGBPixel.h>
#include <itksys/Base64.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#endif

namespace ssn::io {

bool image_io_available() {
#ifdef SSN_WITH_ITK
  return true;
#else
  return false;
#endif
}

void write_rgb_png(const std::filesystem::path& path, const at::Tensor& rgb) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == at::kByte, "cannot write ",
              path.string(), ": expected an RGB image [H, W, 3] of uint8, got ", rgb.sizes(), " ",
              rgb.scalar_type());
#ifdef SSN_WITH_ITK
  using Pixel = itk::RGBPixel<unsigned char>;
  using Image = itk::Image<Pixel, 2>;
  const at::Tensor pixels = rgb.contiguous().cpu();
  Image::RegionType region;
  region.SetSize({static_cast<itk::SizeValueType>(pixels.size(1)),
                  static_cast<itk::SizeValueType>(pixels.size(0))});
  auto image = Image::New();
  image->SetRegions(region);
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), pixels.data_ptr<uint8_t>(), pixels.numel());
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetImageIO(itk::PNGImageIO::New());
    writer->SetFileName(temporary.string());
    writer->SetInput(image);
    try {
      writer->Update();
    } catch (const itk::ExceptionObject& error) {
      TORCH_CHECK(false, "cannot write ", path.string(), ": ", error.GetDescription());
    }
  });
#else
  TORCH_CHECK(false, "cannot write ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the PNG codec");
#endif
}

std::string rgb_png_base64(const at::Tensor& rgb) {
#ifdef SSN_WITH_ITK
  // ITK's PNG writer writes files only: encode through a private temporary file.
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() /
      ("ssn-picture-" + std::to_string(std::random_device{}()) + ".png");
  write_rgb_png(file, rgb);
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::error_code ignored;
  std::filesystem::remove(file, ignored);
  TORCH_CHECK(!bytes.empty(), "cannot read back the encoded picture ", file.string());
  std::string encoded((bytes.size() + 2) / 3 * 4 + 4, '\0');
  const size_t length =
      itksysBase64_Encode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                          reinterpret_cast<unsigned char*>(encoded.data()),
                          /*mark_end=*/0);
  encoded.resize(length);
  return encoded;
#else
  (void)rgb;
  TORCH_CHECK(false, "cannot encode a PNG: ssn was built without ITK (SSN_WITH_ITK=OFF)");
#endif
}

}  // namespace ssn::io
