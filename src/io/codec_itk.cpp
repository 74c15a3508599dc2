// The ITK codecs (SSN_WITH_ITK=ON): PNG, NIfTI, NRRD and MetaImage, registered explicitly.

#include <c10/util/Exception.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImportImageFilter.h>
#include <itkMetaImageIO.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIO.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIO.h>
#include <itkNrrdImageIOFactory.h>
#include <itkPNGImageIO.h>
#include <itkPNGImageIOFactory.h>
#include <itkRGBPixel.h>
#include <itksys/Base64.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <numeric>
#include <random>

#include "codec.h"
#include "completeness.h"
#include "ssn/io/atomic_file.h"

namespace ssn::io::detail {
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

// The ImageIO for a path: by extension when it is one ssn knows (no probing of every format),
// else whichever registered format claims the file.
itk::ImageIOBase::Pointer image_io_for(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  itk::ImageIOBase::Pointer io;
  if (ends_with(".png")) {
    io = itk::PNGImageIO::New();
  } else if (ends_with(".nii") || ends_with(".nii.gz")) {
    io = itk::NiftiImageIO::New();
  } else if (ends_with(".nrrd") || ends_with(".nhdr")) {
    io = itk::NrrdImageIO::New();
  } else if (ends_with(".mha") || ends_with(".mhd")) {
    io = itk::MetaImageIO::New();
  } else {
    io = itk::ImageIOFactory::CreateImageIO(path.string().c_str(),
                                            itk::ImageIOFactory::IOFileModeEnum::ReadMode);
  }
  TORCH_CHECK(io && io->CanReadFile(path.string().c_str()), "cannot read ", path.string(),
              ": not an image in a format ssn reads (PNG, NIfTI, NRRD, MetaImage), or damaged");
  return io;
}

// Reads the whole image straight into a tensor of its own component type, without an ITK
// pipeline: one header parse and one pass over the pixels. Shape [*reversed ITK size].
// [*reversed ITK size], or [*reversed ITK size, C] for C components per pixel.
at::Tensor read_pixels(const std::filesystem::path& path, itk::ImageIOBase* io) {
  const unsigned int dims = io->GetNumberOfDimensions();
  std::vector<int64_t> shape;
  itk::ImageIORegion region(dims);
  for (unsigned int d = 0; d < dims; ++d) {
    region.SetIndex(d, 0);
    region.SetSize(d, io->GetDimensions(d));
    shape.insert(shape.begin(), static_cast<int64_t>(io->GetDimensions(d)));
  }
  if (io->GetNumberOfComponents() > 1) shape.push_back(io->GetNumberOfComponents());
  io->SetIORegion(region);
  using Component = itk::IOComponentEnum;
  at::ScalarType dtype;
  switch (io->GetComponentType()) {
    case Component::UCHAR:
      dtype = at::kByte;
      break;
    case Component::CHAR:
      dtype = at::kChar;
      break;
    case Component::SHORT:
      dtype = at::kShort;
      break;
    case Component::USHORT:
      dtype = at::kInt;
      break;  // widened below
    case Component::INT:
      dtype = at::kInt;
      break;
    case Component::UINT:
      dtype = at::kLong;
      break;  // widened below
    case Component::LONG:
    case Component::LONGLONG:
    case Component::ULONG:
    case Component::ULONGLONG:
      TORCH_CHECK(io->GetComponentSize() == 8, "cannot read ", path.string(),
                  ": unexpected component size ", io->GetComponentSize());
      dtype = at::kLong;
      break;
    case Component::FLOAT:
      dtype = at::kFloat;
      break;
    case Component::DOUBLE:
      dtype = at::kDouble;
      break;
    default:
      TORCH_CHECK(false, "cannot read ", path.string(), ": unsupported pixel type ",
                  itk::ImageIOBase::GetComponentTypeAsString(io->GetComponentType()));
  }
  const int64_t count =
      std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
  try {
    if (io->GetComponentType() == Component::USHORT || io->GetComponentType() == Component::UINT) {
      // No unsigned 16/32-bit tensors in LibTorch 1.13: read raw, then widen.
      std::vector<uint8_t> raw(static_cast<size_t>(count * io->GetComponentSize()));
      io->Read(raw.data());
      at::Tensor out = at::empty(shape, dtype);
      for (int64_t i = 0; i < count; ++i) {
        if (io->GetComponentType() == Component::USHORT) {
          out.data_ptr<int32_t>()[i] = reinterpret_cast<const uint16_t*>(raw.data())[i];
        } else {
          out.data_ptr<int64_t>()[i] = reinterpret_cast<const uint32_t*>(raw.data())[i];
        }
      }
      return out;
    }
    at::Tensor out = at::empty(shape, dtype);
    io->Read(out.data_ptr());
    return out;
  } catch (const itk::ExceptionObject& error) {
    TORCH_CHECK(false, "cannot read ", path.string(), ": ", error.GetDescription());
  }
}

// Refuses a write that cannot fit: ITK's writers do not report a short write, and libpng's error
// path on a full disk is not safe. `bytes` is the uncompressed size, an upper bound of any file.
void check_free_space(const std::filesystem::path& path, uint64_t bytes) {
  const std::filesystem::path folder =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  struct statvfs disk {};
  if (::statvfs(folder.c_str(), &disk) != 0) return;  // unknown: the check after writing remains
  const uint64_t free_bytes = static_cast<uint64_t>(disk.f_bavail) * disk.f_frsize;
  const uint64_t needed = bytes + (uint64_t{64} << 10);  // headers and file-system blocks
  TORCH_CHECK(free_bytes >= needed, "cannot write ", path.string(),
              ": not enough space on its disk (", free_bytes,
              " bytes free, the file may need up to ", needed, ")");
}

// Reads back the header of a file just written to `temporary` and checks that it holds all its
// pixel data (a full disk can cut it short without any error from ITK).
void check_written(const std::filesystem::path& path, const std::filesystem::path& temporary,
                   uint64_t data_bytes) {
  try {
    itk::ImageIOBase::Pointer io = image_io_for(temporary);
    io->SetFileName(temporary.string());
    io->ReadImageInformation();
    TORCH_CHECK(static_cast<uint64_t>(io->GetImageSizeInBytes()) == data_bytes,
                "the header describes ", io->GetImageSizeInBytes(), " bytes of pixel data, not ",
                data_bytes);
    check_complete(temporary, data_bytes);
  } catch (const itk::ExceptionObject& error) {
    TORCH_CHECK(false, "cannot write ", path.string(), ": the written file cannot be read back (",
                error.GetDescription(), ")");
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "cannot write ", path.string(), ": the written file is incomplete (",
                error.what_without_backtrace(), ")");
  }
}

template <typename Pixel, unsigned int D>
void write_pixels(const std::filesystem::path& path, const at::Tensor& values,
                  const Geometry& geometry) {
  using Image = itk::Image<Pixel, D>;
  const at::Tensor bytes = values.contiguous().cpu();
  typename Image::RegionType region;
  typename Image::SizeType size;
  for (unsigned int d = 0; d < D; ++d)
    size[d] = static_cast<itk::SizeValueType>(bytes.size(D - 1 - d));
  region.SetSize(size);
  auto image = Image::New();
  image->SetRegions(region);
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), bytes.data_ptr(), bytes.numel() * sizeof(Pixel));
  if (!geometry.empty()) {
    const size_t g = geometry.spacing.size();
    TORCH_CHECK(g <= D && geometry.origin.size() == g && geometry.direction.size() == g * g,
                "cannot write ", path.string(), ": a geometry of ", g, " axes for an image of ", D);
    typename Image::SpacingType spacing;
    typename Image::PointType origin;
    typename Image::DirectionType direction;
    direction.SetIdentity();
    for (unsigned int i = 0; i < D; ++i) {
      spacing[i] = i < g ? geometry.spacing[i] : 1.0;
      origin[i] = i < g ? geometry.origin[i] : 0.0;
      for (unsigned int j = 0; j < g && i < g; ++j) direction[i][j] = geometry.direction[i * g + j];
    }
    image->SetSpacing(spacing);
    image->SetOrigin(origin);
    image->SetDirection(direction);
  }
  const auto data_bytes = static_cast<uint64_t>(bytes.numel()) * sizeof(Pixel);
  check_free_space(path, data_bytes);
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
    check_written(path, temporary, data_bytes);
  });
}

// The ImageIO of `path` with its header read; errors name the file.
itk::ImageIOBase::Pointer read_header(const std::filesystem::path& path) {
  register_image_formats();
  TORCH_CHECK(std::filesystem::is_regular_file(path), "cannot read ", path.string(),
              ": no such file");
  itk::ImageIOBase::Pointer image_io = image_io_for(path);
  image_io->SetFileName(path.string());
  try {
    image_io->ReadImageInformation();
  } catch (const itk::ExceptionObject& error) {
    TORCH_CHECK(false, "cannot read ", path.string(), ": ", error.GetDescription());
  }
  return image_io;
}

}  // namespace

bool codecs_available() { return true; }

Geometry read_geometry(const std::filesystem::path& path) {
  itk::ImageIOBase::Pointer io = read_header(path);
  Geometry geometry;
  const unsigned int dims = io->GetNumberOfDimensions();
  for (unsigned int i = 0; i < dims; ++i) {
    geometry.spacing.push_back(io->GetSpacing(i));
    geometry.origin.push_back(io->GetOrigin(i));
  }
  // GetDirection(j) is column j (the direction of axis j); stored row-major.
  geometry.direction.assign(dims * dims, 0.0);
  for (unsigned int j = 0; j < dims; ++j) {
    const std::vector<double> column = io->GetDirection(j);
    for (unsigned int i = 0; i < dims; ++i) geometry.direction[i * dims + j] = column[i];
  }
  return geometry;
}

at::Tensor read_image(const std::filesystem::path& path) {
  itk::ImageIOBase::Pointer image_io = read_header(path);
  TORCH_CHECK(image_io->GetNumberOfComponents() == 1, "cannot read ", path.string(),
              ": expected a single-channel image, got ", image_io->GetNumberOfComponents(),
              " components per pixel");
  const unsigned int dims = image_io->GetNumberOfDimensions();
  TORCH_CHECK(dims >= 2 && dims <= 4, "cannot read ", path.string(),
              ": expected an image of 2 to 4 dimensions, got ", dims);
  check_complete(path, image_io->GetImageSizeInBytes());
  return read_pixels(path, image_io);
}

at::Tensor read_channels(const std::filesystem::path& path) {
  itk::ImageIOBase::Pointer image_io = read_header(path);
  if (image_io->GetNumberOfComponents() == 1) return read_image(path);
  const unsigned int dims = image_io->GetNumberOfDimensions();
  TORCH_CHECK(dims >= 2 && dims <= 3, "cannot read ", path.string(),
              ": expected a vector image of 2 or 3 dimensions, got ", dims);
  check_complete(path, image_io->GetImageSizeInBytes());
  const at::Tensor pixels = read_pixels(path, image_io);  // [*spatial, C]
  return pixels.movedim(-1, 0).contiguous();
}

void write_labels(const std::filesystem::path& path, const at::Tensor& labels,
                  const Geometry& geometry) {
  register_image_formats();
  if (labels.dim() == 2) {
    write_pixels<uint8_t, 2>(path, labels.to(at::kByte), geometry);
  } else {
    write_pixels<uint8_t, 3>(path, labels.to(at::kByte), geometry);
  }
}

void write_uint16(const std::filesystem::path& path, const at::Tensor& values) {
  register_image_formats();
  if (values.dim() == 2) {
    write_pixels<uint16_t, 2>(path, values, {});
  } else {
    write_pixels<uint16_t, 3>(path, values, {});
  }
}

void write_floats(const std::filesystem::path& path, const at::Tensor& values,
                  const Geometry& geometry) {
  register_image_formats();
  const at::Tensor floats = values.to(at::kFloat);
  switch (values.dim()) {
    case 2:
      write_pixels<float, 2>(path, floats, geometry);
      break;
    case 3:
      write_pixels<float, 3>(path, floats, geometry);
      break;
    default:
      write_pixels<float, 4>(path, floats, geometry);
  }
}

void write_rgb_png(const std::filesystem::path& path, const at::Tensor& rgb) {
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
  const auto data_bytes = static_cast<uint64_t>(pixels.numel());
  check_free_space(path, data_bytes);
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
    check_written(path, temporary, data_bytes);
  });
}

std::string rgb_png_base64(const at::Tensor& rgb) {
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
}

}  // namespace ssn::io::detail
