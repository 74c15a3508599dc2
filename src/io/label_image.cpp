#include "ssn/io/label_image.h"

#include "ssn/io/atomic_file.h"

#ifdef SSN_WITH_ITK
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkPNGImageIOFactory.h>

#include <cstring>
#include <mutex>
#endif

namespace ssn::io {

#ifdef SSN_WITH_ITK
namespace {

// Explicit registration: the formats ssn supports, without ITK's CMake-generated registry.
void register_image_formats() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::PNGImageIOFactory::RegisterOneFactory();
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
  });
}

template <unsigned int D>
at::Tensor read_labels(const std::filesystem::path& path) {
  using Image = itk::Image<int32_t, D>;
  auto reader = itk::ImageFileReader<Image>::New();
  reader->SetFileName(path.string());
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& error) {
    TORCH_CHECK(false, "cannot read ", path.string(), ": ", error.GetDescription());
  }
  const auto size = reader->GetOutput()->GetLargestPossibleRegion().GetSize();
  std::vector<int64_t> shape;
  for (int d = static_cast<int>(D) - 1; d >= 0; --d) shape.push_back(static_cast<int64_t>(size[d]));
  at::Tensor labels = at::empty(shape, at::kInt);
  std::memcpy(labels.data_ptr<int32_t>(), reader->GetOutput()->GetBufferPointer(),
              labels.numel() * sizeof(int32_t));
  return labels.to(at::kLong);
}

template <unsigned int D>
void write_labels(const std::filesystem::path& path, const at::Tensor& labels) {
  using Image = itk::Image<uint8_t, D>;
  const at::Tensor bytes = labels.to(at::kByte).contiguous().cpu();
  typename Image::RegionType region;
  typename Image::SizeType size;
  for (unsigned int d = 0; d < D; ++d) size[d] = static_cast<itk::SizeValueType>(bytes.size(D - 1 - d));
  region.SetSize(size);
  auto image = Image::New();
  image->SetRegions(region);
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), bytes.data_ptr<uint8_t>(), bytes.numel());
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetFileName(temporary.string());
    writer->SetInput(image);
    writer->UseCompressionOn();
    try {
      writer->Update();
    } catch (const itk::ExceptionObject& error) {
      TORCH_CHECK(false, "cannot write ", path.string(), ": ", error.GetDescription());
    }
  });
}

}  // namespace
#endif

at::Tensor read_label_image(const std::filesystem::path& path) {
#ifdef SSN_WITH_ITK
  register_image_formats();
  TORCH_CHECK(std::filesystem::is_regular_file(path), "cannot read ", path.string(),
              ": no such file");
  auto image_io = itk::ImageIOFactory::CreateImageIO(path.string().c_str(),
                                                     itk::ImageIOFactory::IOFileModeEnum::ReadMode);
  TORCH_CHECK(image_io, "cannot read ", path.string(),
              ": not an image in a format ssn reads (PNG, NIfTI, NRRD, MetaImage)");
  image_io->SetFileName(path.string());
  try {
    image_io->ReadImageInformation();
  } catch (const itk::ExceptionObject& error) {
    TORCH_CHECK(false, "cannot read ", path.string(), ": ", error.GetDescription());
  }
  TORCH_CHECK(image_io->GetNumberOfComponents() == 1, "cannot read ", path.string(),
              " as a label map: expected one channel, got ", image_io->GetNumberOfComponents());
  switch (image_io->GetNumberOfDimensions()) {
    case 2:
      return read_labels<2>(path);
    case 3:
      return read_labels<3>(path);
    default:
      TORCH_CHECK(false, "cannot read ", path.string(), ": expected a 2-D or 3-D image, got ",
                  image_io->GetNumberOfDimensions(), " dimensions");
  }
#else
  TORCH_CHECK(false, "cannot read ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
#endif
}

void write_label_image(const std::filesystem::path& path, const at::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 2 || labels.dim() == 3, "cannot write ", path.string(),
              ": expected labels [H, W] or [D, H, W], got ", labels.sizes());
  TORCH_CHECK(labels.numel() == 0 ||
                  (labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() <= 255),
              "cannot write ", path.string(), ": labels must lie in [0, 255]");
#ifdef SSN_WITH_ITK
  register_image_formats();
  if (labels.dim() == 2) {
    write_labels<2>(path, labels);
  } else {
    write_labels<3>(path, labels);
  }
#else
  TORCH_CHECK(false, "cannot write ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
#endif
}

}  // namespace ssn::io
