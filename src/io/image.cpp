#include "ssn/io/image.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "ssn/io/atomic_file.h"

#ifdef SSN_WITH_ITK
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkMetaImageIO.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIO.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIO.h>
#include <itkNrrdImageIOFactory.h>
#include <itkPNGImageIO.h>
#include <itkPNGImageIOFactory.h>

#include <cstring>
#include <functional>
#include <mutex>
#include <numeric>
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
at::Tensor read_pixels(const std::filesystem::path& path, itk::ImageIOBase* io) {
  const unsigned int dims = io->GetNumberOfDimensions();
  std::vector<int64_t> shape;
  itk::ImageIORegion region(dims);
  for (unsigned int d = 0; d < dims; ++d) {
    region.SetIndex(d, 0);
    region.SetSize(d, io->GetDimensions(d));
    shape.insert(shape.begin(), static_cast<int64_t>(io->GetDimensions(d)));
  }
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

Geometry read_geometry(const std::filesystem::path& path) {
#ifdef SSN_WITH_ITK
  register_image_formats();
  TORCH_CHECK(std::filesystem::is_regular_file(path), "cannot read ", path.string(),
              ": no such file");
  itk::ImageIOBase::Pointer io = image_io_for(path);
  io->SetFileName(path.string());
  try {
    io->ReadImageInformation();
  } catch (const itk::ExceptionObject& error) {
    TORCH_CHECK(false, "cannot read ", path.string(), ": ", error.GetDescription());
  }
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
#else
  TORCH_CHECK(false, "cannot read ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
#endif
}

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

at::Tensor read_image(const std::filesystem::path& path) {
#ifdef SSN_WITH_ITK
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
  TORCH_CHECK(image_io->GetNumberOfComponents() == 1, "cannot read ", path.string(),
              ": expected a single-channel image, got ", image_io->GetNumberOfComponents(),
              " components per pixel");
  const unsigned int dims = image_io->GetNumberOfDimensions();
  TORCH_CHECK(dims >= 2 && dims <= 4, "cannot read ", path.string(),
              ": expected an image of 2 to 4 dimensions, got ", dims);
  return read_pixels(path, image_io);
#else
  TORCH_CHECK(false, "cannot read ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
#endif
}

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
#ifdef SSN_WITH_ITK
  register_image_formats();
  if (labels.dim() == 2) {
    write_pixels<uint8_t, 2>(path, labels.to(at::kByte), geometry);
  } else {
    write_pixels<uint8_t, 3>(path, labels.to(at::kByte), geometry);
  }
#else
  TORCH_CHECK(false, "cannot write ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
#endif
}

void write_float_image(const std::filesystem::path& path, const at::Tensor& values,
                       const Geometry& geometry) {
  TORCH_CHECK(values.dim() >= 2 && values.dim() <= 4 && at::isFloatingType(values.scalar_type()),
              "cannot write ", path.string(),
              ": expected a floating-point tensor of 2 to 4 dimensions, got ", values.sizes(), " ",
              values.scalar_type());
#ifdef SSN_WITH_ITK
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
#else
  TORCH_CHECK(false, "cannot write ", path.string(),
              ": ssn was built without ITK (SSN_WITH_ITK=OFF), which provides the image codecs");
#endif
}

}  // namespace ssn::io
