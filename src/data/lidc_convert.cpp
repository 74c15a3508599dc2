#include "ssn/data/lidc_convert.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#ifdef SSN_WITH_HDF5
#include <hdf5.h>
#endif

#include "ssn/data/splits.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/io/pickle.h"

namespace ssn::data {
namespace {

namespace fs = std::filesystem;
using io::pickle::Kind;
using io::pickle::Value;

const char* const kSplits[] = {"train", "val", "test"};

struct SliceRecord {
  std::string split, patient, name;
};

// Where the slices come from: the records, and each slice's image (float64 [H, W]) and masks
// (uint8 [A, H, W]) on demand.
class Source {
 public:
  virtual ~Source() = default;
  const std::vector<SliceRecord>& records() const { return records_; }
  virtual void load(size_t i, at::Tensor& image, at::Tensor& masks) = 0;

 protected:
  std::vector<SliceRecord> records_;
};

// A name usable as a file or folder name: [A-Za-z0-9._-], others become '_'.
std::string file_name(const std::string& text) {
  std::string out = text;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

at::ScalarType numpy_type(const std::string& dtype, const std::string& what) {
  TORCH_CHECK(dtype.size() == 3 && dtype[0] != '>', what, " has NumPy type ", dtype,
              " (ssn reads little-endian bool, int, uint8 and float arrays)");
  const std::string t = dtype.substr(1);
  if (t == "b1") return at::kBool;
  if (t == "u1") return at::kByte;
  if (t == "i1") return at::kChar;
  if (t == "i2") return at::kShort;
  if (t == "i4") return at::kInt;
  if (t == "i8") return at::kLong;
  if (t == "f4") return at::kFloat;
  if (t == "f8") return at::kDouble;
  TORCH_CHECK(false, what, " has NumPy type ", dtype,
              " (ssn reads bool, int8-64, uint8, float32 and float64 arrays)");
}

// A NumPy array as a tensor (a copy), C or Fortran order.
at::Tensor tensor_of(const Value& value, const std::string& what) {
  TORCH_CHECK(value.is(Kind::kArray) && value.array != nullptr, what, " is ", value.describe(),
              ", expected a NumPy array");
  const io::pickle::Array& a = *value.array;
  const at::ScalarType type = numpy_type(a.dtype, what);
  std::vector<int64_t> shape = a.shape;
  if (a.fortran_order) std::reverse(shape.begin(), shape.end());
  at::Tensor t = at::from_blob(const_cast<char*>(a.data.data), shape, at::TensorOptions(type));
  if (a.fortran_order) {
    std::vector<int64_t> order(shape.size());
    for (size_t d = 0; d < order.size(); ++d) order[d] = static_cast<int64_t>(order.size() - 1 - d);
    t = t.permute(order);
  }
  return t.clone(at::MemoryFormat::Contiguous);
}

class PickleSource : public Source {
 public:
  PickleSource(const fs::path& path, uint64_t seed) : what_(path.string()), file_(what_) {
    const std::string& what = what_;
    io::pickle::Permissions permissions;
    permissions.numpy = true;
    root_ = io::pickle::read(file_.data(), file_.size(), what, permissions);
    TORCH_CHECK(root_.is(Kind::kDict) && !root_.entries->empty(), what, " holds ", root_.describe(),
                ", expected data_lidc.pickle's dict of slices");
    std::map<std::string, std::vector<size_t>> by_patient;
    std::set<std::string> names;
    std::map<std::string, std::string> folders;  // patient folder -> series_uid
    for (const auto& [key, value] : *root_.entries) {
      const std::string name = key.is(Kind::kString) ? key.text : "";
      TORCH_CHECK(key.is(Kind::kString), what, ": a slice key is ", key.describe(),
                  ", expected a str");
      const std::string slice = what + ", slice '" + name + "'";
      TORCH_CHECK(value.is(Kind::kDict), slice, " is ", value.describe(), ", expected a dict");
      const Value* image = value.find("image");
      const Value* masks = value.find("masks");
      const Value* uid = value.find("series_uid");
      TORCH_CHECK(image != nullptr && masks != nullptr && uid != nullptr, slice,
                  " lacks 'image', 'masks' or 'series_uid'");
      TORCH_CHECK(uid->is(Kind::kString), slice, ": 'series_uid' is ", uid->describe());
      TORCH_CHECK((masks->is(Kind::kList) || masks->is(Kind::kTuple)) && !masks->items->empty(),
                  slice, ": 'masks' is ", masks->describe(), ", expected a list of arrays");
      entries_.push_back({image, masks, name});
      by_patient[uid->text].push_back(records_.size());
      const std::string safe = file_name(name);
      TORCH_CHECK(names.insert(safe).second, what, ": two slices are called ", safe,
                  " once written as file names");
      const std::string patient = file_name(uid->text);
      const auto [folder, added] = folders.emplace(patient, uid->text);
      TORCH_CHECK(added || folder->second == uid->text, what, ": series_uid '", uid->text,
                  "' and '", folder->second, "' would share the patient folder ", patient);
      records_.push_back({"", patient, safe});
    }
    // PHiSeg's proportions: 20% of the patients for test, then 20% of the rest for validation.
    const Split split =
        split_cases(static_cast<int64_t>(by_patient.size()), {0.64, 0.16, 0.2}, seed);
    std::vector<std::vector<size_t>*> patients;
    for (auto& [uid, slices] : by_patient) patients.push_back(&slices);
    for (size_t part = 0; part < 3; ++part) {
      for (int64_t p : split.parts[part]) {
        for (size_t i : *patients[static_cast<size_t>(p)]) records_[i].split = kSplits[part];
      }
    }
  }

  void load(size_t i, at::Tensor& image, at::Tensor& masks) override {
    const Entry& e = entries_[i];
    const std::string slice = what_ + ", slice '" + e.name + "'";
    image = tensor_of(*e.image, "the image of " + slice).to(at::kDouble);
    std::vector<at::Tensor> list;
    for (size_t a = 0; a < e.masks->items->size(); ++a) {
      list.push_back(
          tensor_of((*e.masks->items)[a], "mask " + std::to_string(a + 1) + " of " + slice));
      TORCH_CHECK(list.back().sizes() == image.sizes(), "mask ", a + 1, " of ", slice, " is ",
                  list.back().sizes(), ", its image ", image.sizes());
    }
    masks = at::stack(list).to(at::kInt);
  }

 private:
  struct Entry {
    const Value* image;
    const Value* masks;
    std::string name;
  };
  std::string what_;
  io::pickle::MappedFile file_;
  Value root_;
  std::vector<Entry> entries_;
};

#ifdef SSN_WITH_HDF5
// An HDF5 handle closed by its destructor.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

class Hdf5Source : public Source {
 public:
  explicit Hdf5Source(const fs::path& path)
      : what_(path.string()), file_(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose) {
    TORCH_CHECK(file_.get() >= 0, what_, ": HDF5 cannot open it (damaged or not an HDF5 file)");
    for (const char* split : kSplits) {
      TORCH_CHECK(H5Lexists(file_.get(), split, H5P_DEFAULT) > 0, what_, " has no group '", split,
                  "': expected PHiSeg's data_lidc.hdf5 (groups train, val, test)");
      Part part;
      part.split = split;
      part.images = open(split, "images", 3, H5T_FLOAT, part.image_dims);
      part.labels = open(split, "labels", 4, H5T_INTEGER, part.label_dims);
      std::vector<hsize_t> uid_dims;
      part.uids = open(split, "uids", 1, H5T_INTEGER, uid_dims);
      const hsize_t n = part.image_dims[0];
      TORCH_CHECK(part.label_dims[0] == n && uid_dims[0] == n &&
                      part.label_dims[1] == part.image_dims[1] &&
                      part.label_dims[2] == part.image_dims[2],
                  what_, ": in group '", split, "', images [", n, ", ", part.image_dims[1], ", ",
                  part.image_dims[2], "], labels [", part.label_dims[0], ", ", part.label_dims[1],
                  ", ", part.label_dims[2], ", ", part.label_dims[3], "] and uids [", uid_dims[0],
                  "] do not agree");
      std::vector<int64_t> uids(n);
      if (n > 0) {
        TORCH_CHECK(H5Dread(part.uids->get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                            uids.data()) >= 0,
                    what_, ": cannot read ", split, "/uids (damaged)");
      }
      std::map<int64_t, int64_t> seen;
      for (hsize_t i = 0; i < n; ++i) {
        const int64_t k = seen[uids[i]]++;
        char name[32];
        std::snprintf(name, sizeof name, "slice_%03lld", static_cast<long long>(k));
        records_.push_back({split, std::to_string(uids[i]), name});
        where_.emplace_back(parts_.size(), i);
      }
      parts_.push_back(std::move(part));
    }
  }

  void load(size_t i, at::Tensor& image, at::Tensor& masks) override {
    const auto [p, index] = where_[i];
    Part& part = parts_[p];
    const hsize_t h = part.image_dims[1], w = part.image_dims[2], a = part.label_dims[3];
    image = at::empty({static_cast<int64_t>(h), static_cast<int64_t>(w)}, at::kDouble);
    read_slab(*part.images, part.image_dims, index, H5T_NATIVE_DOUBLE, image.data_ptr(),
              part.split + "/images");
    at::Tensor labels = at::empty(
        {static_cast<int64_t>(h), static_cast<int64_t>(w), static_cast<int64_t>(a)}, at::kInt);
    read_slab(*part.labels, part.label_dims, index, H5T_NATIVE_INT32, labels.data_ptr(),
              part.split + "/labels");
    masks = labels.permute({2, 0, 1}).contiguous();
  }

 private:
  struct Part {
    std::string split;
    std::unique_ptr<Handle> images, labels, uids;
    std::vector<hsize_t> image_dims, label_dims;
  };

  std::unique_ptr<Handle> open(const std::string& split, const std::string& name, int rank,
                               H5T_class_t type_class, std::vector<hsize_t>& dims) {
    const std::string path = split + "/" + name;
    TORCH_CHECK(H5Lexists(file_.get(), split.c_str(), H5P_DEFAULT) > 0 &&
                    H5Lexists(file_.get(), path.c_str(), H5P_DEFAULT) > 0,
                what_, " has no dataset ", path);
    auto dataset =
        std::make_unique<Handle>(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
    TORCH_CHECK(dataset->get() >= 0, what_, ": cannot open dataset ", path, " (damaged)");
    Handle type(H5Dget_type(dataset->get()), H5Tclose);
    TORCH_CHECK(H5Tget_class(type.get()) == type_class, what_, ": dataset ", path, " is not of ",
                type_class == H5T_FLOAT ? "a floating-point" : "an integer", " type");
    Handle space(H5Dget_space(dataset->get()), H5Sclose);
    TORCH_CHECK(H5Sget_simple_extent_ndims(space.get()) == rank, what_, ": dataset ", path, " has ",
                H5Sget_simple_extent_ndims(space.get()), " dimensions, expected ", rank);
    dims.resize(static_cast<size_t>(rank));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    return dataset;
  }

  // Reads row `index` of the dataset (all its other dimensions) into `out` as `memory_type`.
  void read_slab(const Handle& dataset, const std::vector<hsize_t>& dims, hsize_t index,
                 hid_t memory_type, void* out, const std::string& path) {
    std::vector<hsize_t> start(dims.size(), 0), count(dims);
    start[0] = index;
    count[0] = 1;
    Handle file_space(H5Dget_space(dataset.get()), H5Sclose);
    Handle memory_space(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr),
                        H5Sclose);
    TORCH_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                    count.data(), nullptr) >= 0 &&
                    H5Dread(dataset.get(), memory_type, memory_space.get(), file_space.get(),
                            H5P_DEFAULT, out) >= 0,
                what_, ": cannot read row ", index, " of ", path, " (damaged)");
  }

  std::string what_;
  Handle file_;
  std::vector<Part> parts_;
  std::vector<std::pair<size_t, hsize_t>> where_;
};
#endif

std::unique_ptr<Source> open_source(const fs::path& input, uint64_t seed, std::string& format) {
  const std::string what = input.string();
  TORCH_CHECK(fs::is_regular_file(input), "--input ", what, ": no such file");
  std::string head(8, '\0');
  {
    std::ifstream in(input, std::ios::binary);
    TORCH_CHECK(in, "cannot read ", what);
    in.read(head.data(), 8);
    head.resize(static_cast<size_t>(in.gcount()));
  }
  if (head == "\x89HDF\r\n\x1a\n") {
    format = "hdf5";
#ifdef SSN_WITH_HDF5
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors come back as return values
    return std::make_unique<Hdf5Source>(input);
#else
    TORCH_CHECK(false, what,
                " is an HDF5 file, and this ssn was built without HDF5 "
                "(SSN_WITH_HDF5=OFF)");
#endif
  }
  if (!head.empty() && static_cast<unsigned char>(head[0]) == 0x80) {
    format = "pickle";
    return std::make_unique<PickleSource>(input, seed);
  }
  TORCH_CHECK(false, what,
              " is neither a pickle (data_lidc.pickle) nor an HDF5 file "
              "(data_lidc.hdf5)");
}

}  // namespace

ConvertLidcSummary convert_lidc(const fs::path& input, const fs::path& out,
                                const ConvertLidcOptions& options) {
  ConvertLidcSummary summary;
  const std::unique_ptr<Source> source = open_source(input, options.seed, summary.format);
  const std::vector<SliceRecord>& records = source->records();
  TORCH_CHECK(!records.empty(), input.string(), " holds no slices");
  // First pass: every slice checked, and the images' range for the one linear map.
  double low = INFINITY, high = -INFINITY;
  std::vector<int64_t> shape;
  std::map<std::string, std::set<std::string>> patients;
  for (size_t i = 0; i < records.size(); ++i) {
    const SliceRecord& r = records[i];
    const std::string slice =
        input.string() + ", " + r.split + " slice " + r.patient + "/" + r.name;
    at::Tensor image, masks;
    source->load(i, image, masks);
    TORCH_CHECK(image.dim() == 2 && masks.dim() == 3, slice, ": image ", image.sizes(),
                " and masks ", masks.sizes(), " (expected [H, W] and [A, H, W])");
    if (shape.empty()) {
      shape = masks.sizes().vec();
      summary.annotators = shape[0];
    }
    TORCH_CHECK(masks.sizes().vec() == shape, slice, " has masks ", masks.sizes(),
                ", the first slice ", at::IntArrayRef(shape));
    TORCH_CHECK(at::isfinite(image).all().item<bool>(), slice, " has a non-finite image value");
    TORCH_CHECK(masks.eq(0).logical_or(masks.eq(1)).all().item<bool>(), slice,
                " has a mask value other than 0 and 1");
    low = std::min(low, image.min().item<double>());
    high = std::max(high, image.max().item<double>());
    patients[r.split].insert(r.patient);
    ++summary.slices[r.split];
  }
  std::map<std::string, int> splits_of;
  for (const auto& [split, set] : patients) {
    summary.patients[split] = static_cast<int64_t>(set.size());
    for (const std::string& patient : set) ++splits_of[patient];
  }
  for (const auto& [patient, count] : splits_of) summary.patients_in_two_splits += count > 1;
  summary.offset = low;
  summary.scale = high > low ? (high - low) / 65535.0 : 1.0;

  io::write_folder_atomically(out, "--out", [&](const fs::path& staging) {
    for (size_t i = 0; i < records.size(); ++i) {
      const SliceRecord& r = records[i];
      at::Tensor image, masks;
      source->load(i, image, masks);
      const fs::path images = staging / r.split / "images" / r.patient;
      const fs::path gt = staging / r.split / "gt" / r.patient;
      fs::create_directories(images);
      fs::create_directories(gt);
      io::write_uint16_image(images / (r.name + ".png"),
                             ((image - summary.offset) / summary.scale).round().clamp(0, 65535));
      for (int64_t a = 0; a < masks.size(0); ++a) {
        io::write_label_image(gt / (r.name + "_l" + std::to_string(a + 1) + ".png"),
                              masks[a] * 255);
      }
      if (options.progress)
        options.progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(records.size()));
    }
    nlohmann::json info = {
        {"source", fs::absolute(input).string()},
        {"format", summary.format},
        {"seed", summary.format == "pickle" ? nlohmann::json(options.seed) : nlohmann::json()},
        {"annotators", summary.annotators},
        {"image_png_to_source", {{"scale", summary.scale}, {"offset", summary.offset}}},
        {"slices", summary.slices},
        {"patients", summary.patients},
        {"patients_in_two_splits", summary.patients_in_two_splits},
        {"description",
         "Written by ssn convert-lidc. Images are 16-bit PNG: source value = offset + scale * "
         "PNG value. Masks are 0/255 PNG, one per annotator (<slice>_l1.png ...)."}};
    io::write_text_file(staging / "lidc_conversion.json", info.dump(2) + "\n");
  });
  return summary;
}

}  // namespace ssn::data
