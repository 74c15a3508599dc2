#pragma once

// A reader of Python pickles that executes nothing: it interprets the pickle opcodes (protocols 2
// to 5) and builds only plain data (None, bool, int, float, str, bytes, tuple, list, dict) and the
// few objects that ssn's files need: NumPy arrays, dtypes and scalars (data_lidc.pickle), and
// PyTorch's OrderedDict, tensors and storages (torch.save checkpoints). Any other global, and any
// opcode outside that set, is refused with an error that names it. Byte strings and NumPy array
// data are views into the input, which the caller keeps alive (a memory map for files over 2 GB).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ssn::io::pickle {

enum class Kind {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kBytes,
  kTuple,
  kList,
  kDict,
  kGlobal,   ///< a permitted class or function, by name ("numpy.ndarray")
  kArray,    ///< a NumPy array
  kDtype,    ///< a NumPy dtype
  kStorage,  ///< a PyTorch storage named by a persistent id
  kTensor,   ///< a PyTorch tensor: a view of a storage
};

/// Bytes inside the pickle's input (or a mapped file): valid while the input is.
struct Bytes {
  const char* data = nullptr;
  size_t size = 0;
  /// Set when the bytes are not in the input (protocol 2's latin-1 encoded bytes).
  std::shared_ptr<const std::string> owner;
};

struct Value;
using Items = std::vector<Value>;
using Entries = std::vector<std::pair<Value, Value>>;

/// A NumPy array: `dtype` is NumPy's descr with its byte order ("<f4", "|u1", "<f8").
struct Array {
  std::string dtype;
  std::vector<int64_t> shape;
  bool fortran_order = false;
  Bytes data;
};

/// A PyTorch tensor as pickled: a strided view of the storage `storage_key` whose element type
/// is `storage_type` ("FloatStorage").
struct TensorRef {
  std::string storage_key;
  std::string storage_type;
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

struct Value {
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;  ///< str, a global's name, a dtype's descr
  Bytes bytes;
  std::shared_ptr<Items> items;      ///< tuple, list
  std::shared_ptr<Entries> entries;  ///< dict (insertion order kept)
  std::shared_ptr<Array> array;
  std::shared_ptr<TensorRef> tensor;  ///< storage (key, type, numel) or tensor

  bool is(Kind k) const { return kind == k; }
  /// "a dict", "a str", "numpy.ndarray" ... for error messages.
  std::string describe() const;
  /// The value of a dict under the str key `key`, or nullptr (also when this is not a dict).
  const Value* find(const std::string& key) const;
};

/// The families of objects a reader may build besides plain data.
struct Permissions {
  /// numpy.core.multiarray._reconstruct / numpy.ndarray / numpy.dtype / scalar / _frombuffer
  /// (numpy._core.* too), and _codecs.encode (protocol 2's bytes).
  bool numpy = false;
  /// collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
  /// storage classes (torch.FloatStorage ...), with persistent ids ('storage', ...).
  bool torch = false;
};

/// Reads one pickle from `data[begin, size)` and returns its value; `end`, when given, receives
/// the offset after its STOP opcode (files that hold several pickles one after the other).
/// Errors (c10::Error) name `what` (the file), the opcode or global and the byte offset.
Value read(const char* data, size_t size, const std::string& what, const Permissions& permissions,
           size_t begin = 0, size_t* end = nullptr);

/// A read-only memory map of a whole file: the input for files of any size.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ssn::io::pickle
