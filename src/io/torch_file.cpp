#include "ssn/io/torch_file.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <map>
#include <set>
#include <string_view>

#include "ssn/io/atomic_file.h"
#include "ssn/io/pickle.h"
#include "ssn/io/zip.h"

namespace ssn::io {
namespace {

namespace fs = std::filesystem;
using pickle::Kind;
using pickle::Value;

struct StorageType {
  const char* name;
  at::ScalarType type;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", at::kFloat},       {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong},     {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},       {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool}};

at::ScalarType scalar_type_of(const std::string& storage, const std::string& file) {
  for (const StorageType& s : kStorageTypes) {
    if (storage == s.name) return s.type;
  }
  TORCH_CHECK(false, file, ": storage type ", storage, " is not one ssn reads");
}

const char* storage_name_of(at::ScalarType type) {
  for (const StorageType& s : kStorageTypes) {
    if (s.type == type) return s.name;
  }
  TORCH_CHECK(false, "cannot write tensors of type ", c10::toString(type), " for PyTorch");
}

// The tensor `ref` views in `storage` (its raw bytes), copied out as a contiguous tensor.
at::Tensor materialise(const pickle::TensorRef& ref, const std::string& storage,
                       const std::string& name, const std::string& file) {
  const at::ScalarType type = scalar_type_of(ref.storage_type, file);
  const auto element = static_cast<int64_t>(c10::elementSize(type));
  const auto available = static_cast<int64_t>(storage.size()) / element;
  TORCH_CHECK(static_cast<int64_t>(storage.size()) % element == 0 && available >= ref.storage_numel,
              file, ": the storage of ", name, " holds ", storage.size(), " bytes, not ",
              ref.storage_numel, " elements of ", c10::toString(type), " (damaged)");
  // Every element inside the storage, and no more elements than it holds (a state_dict's tensors
  // are never expanded views), in arithmetic that cannot overflow.
  int64_t count = 1;
  bool inside = ref.offset >= 0 && ref.offset <= available;
  for (int64_t size : ref.size) {
    inside = inside && size >= 0;
    count = size == 0 ? 0 : (count > available / size ? available + 1 : count * size);
  }
  int64_t last = ref.offset;
  for (size_t d = 0; d < ref.size.size() && inside && count > 0; ++d) {
    const int64_t size = ref.size[d], stride = ref.stride[d];
    inside = stride >= 0 && (stride == 0 || size - 1 <= (available - last) / stride);
    if (inside) last += (size - 1) * stride;
  }
  TORCH_CHECK(inside && count <= ref.storage_numel && (count == 0 || last < available), file,
              ": tensor ", name, " reaches past the end of its storage (damaged)");
  const at::Tensor whole =
      at::from_blob(const_cast<char*>(storage.data()), {available}, at::TensorOptions(type));
  return whole.as_strided(ref.size, ref.stride, ref.offset).clone(at::MemoryFormat::Contiguous);
}

// The state_dict inside `root`: root itself, or its 'state_dict' / 'model' entry.
const Value& find_state_dict(const Value& root, const std::string& file, std::string* entry) {
  auto all_tensors = [](const Value& v) {
    if (!v.is(Kind::kDict) || v.entries->empty()) return false;
    for (const auto& [key, value] : *v.entries) {
      if (!key.is(Kind::kString) || !value.is(Kind::kTensor)) return false;
    }
    return true;
  };
  TORCH_CHECK(root.is(Kind::kDict), file, " holds ", root.describe(),
              ", not a state_dict (a dict of tensors) or a checkpoint dict");
  if (all_tensors(root)) {
    if (entry != nullptr) *entry = "";
    return root;
  }
  for (const char* key : {"state_dict", "model", "model_state_dict"}) {
    const Value* inner = root.find(key);
    if (inner != nullptr && all_tensors(*inner)) {
      if (entry != nullptr) *entry = key;
      return *inner;
    }
  }
  std::string keys;
  for (const auto& [key, value] : *root.entries) {
    if (keys.size() > 200) {
      keys += ", ...";
      break;
    }
    keys += (keys.empty() ? "" : ", ") +
            (key.is(Kind::kString) ? "'" + key.text + "'" : key.describe()) + " (" +
            value.describe() + ")";
  }
  TORCH_CHECK(false, file, " holds a dict that is not a state_dict (", keys,
              ") and has no 'state_dict' or 'model' entry that is one");
}

std::vector<NamedTensor> read_zip_format(const fs::path& path, std::string* entry) {
  const std::string file = path.string();
  ZipReader zip(path);
  std::string prefix;
  for (const ZipRecord& r : zip.records()) {
    const auto slash = r.name.find('/');
    if (slash != std::string::npos && r.name.substr(slash) == "/data.pkl") {
      TORCH_CHECK(prefix.empty(), file, " holds two data.pkl records: not a torch.save file");
      prefix = r.name.substr(0, slash + 1);
    }
  }
  TORCH_CHECK(!prefix.empty(), file,
              " is a zip archive without <name>/data.pkl: not a torch.save file");
  if (const ZipRecord* order = zip.find(prefix + "byteorder")) {
    const std::string byteorder = zip.read(*order);
    TORCH_CHECK(byteorder == "little", file, " was saved with byte order '", byteorder,
                "': ssn reads little-endian files");
  }
  const std::string data = zip.read(*zip.find(prefix + "data.pkl"));
  pickle::Permissions permissions;
  permissions.torch = true;
  size_t end = 0;
  const Value root =
      pickle::read(data.data(), data.size(), file + " (data.pkl)", permissions, 0, &end);
  const Value& dict = find_state_dict(root, file, entry);
  std::map<std::string, std::string> storages;
  std::vector<NamedTensor> out;
  for (const auto& [key, value] : *dict.entries) {
    const std::string& key_name = value.tensor->storage_key;
    auto found = storages.find(key_name);
    if (found == storages.end()) {
      const ZipRecord* record = zip.find(prefix + "data/" + key_name);
      TORCH_CHECK(record != nullptr, file, ": tensor ", key.text, " names storage ", key_name,
                  ", which the archive does not hold (damaged)");
      found = storages.emplace(key_name, zip.read(*record)).first;
    }
    out.push_back({key.text, materialise(*value.tensor, found->second, key.text, file)});
  }
  return out;
}

// The format of torch.save before PyTorch 1.6: five pickles one after the other (magic number,
// protocol version, system info, the object, the storage keys), then each storage as an int64
// element count and its bytes.
bool is_legacy_magic(const std::string& head) {
  // PROTO 2, LONG1 of 10 bytes: the legacy format's magic number 0x1950a86a20f9469cfc6c.
  static const unsigned char magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                        0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return head.size() >= sizeof magic && std::memcmp(head.data(), magic, sizeof magic) == 0;
}

std::vector<NamedTensor> read_legacy(const fs::path& path, std::string* entry) {
  const std::string file = path.string();
  const std::string data = read_text_file(path);
  size_t at = 14 + 1;  // the magic number's pickle, then its STOP
  TORCH_CHECK(data.size() > at && data[at - 1] == '.', file, ": damaged legacy torch.save file");
  pickle::Permissions plain;
  const Value protocol = pickle::read(data.data(), data.size(), file, plain, at, &at);
  TORCH_CHECK(protocol.is(Kind::kInt) && protocol.integer == 1001, file,
              ": legacy torch.save protocol ", protocol.describe(), " (ssn reads 1001)");
  const Value info = pickle::read(data.data(), data.size(), file, plain, at, &at);
  const Value* little = info.find("little_endian");
  TORCH_CHECK(little == nullptr || (little->is(Kind::kBool) && little->boolean), file,
              " was saved on a big-endian machine: ssn reads little-endian files");
  pickle::Permissions permissions;
  permissions.torch = true;
  const Value root = pickle::read(data.data(), data.size(), file, permissions, at, &at);
  const Value keys = pickle::read(data.data(), data.size(), file, plain, at, &at);
  TORCH_CHECK(keys.is(Kind::kList), file, ": damaged legacy torch.save file (no storage list)");
  // Storage sizes come from the tensors that name them.
  std::map<std::string, std::string> types;
  const Value& dict = find_state_dict(root, file, entry);
  for (const auto& [key, value] : *dict.entries) {
    types[value.tensor->storage_key] = value.tensor->storage_type;
  }
  std::map<std::string, std::string> storages;
  for (const Value& key : *keys.items) {
    TORCH_CHECK(key.is(Kind::kString), file, ": damaged legacy torch.save file (storage key)");
    TORCH_CHECK(data.size() - at >= 8, file, " is truncated (storage ", key.text, ")");
    int64_t count = 0;
    std::memcpy(&count, data.data() + at, 8);
    at += 8;
    const auto type = types.find(key.text);
    TORCH_CHECK(type != types.end(), file, ": storage ", key.text, " belongs to no tensor");
    const auto bytes =
        static_cast<uint64_t>(count) * c10::elementSize(scalar_type_of(type->second, file));
    TORCH_CHECK(count >= 0 && bytes <= data.size() - at, file, " is truncated (storage ", key.text,
                ")");
    storages[key.text] = data.substr(at, bytes);
    at += bytes;
  }
  TORCH_CHECK(at == data.size(), file, " has ", data.size() - at,
              " bytes after its last storage (damaged)");
  std::vector<NamedTensor> out;
  for (const auto& [key, value] : *dict.entries) {
    const auto found = storages.find(value.tensor->storage_key);
    TORCH_CHECK(found != storages.end(), file, ": tensor ", key.text, " names a missing storage");
    out.push_back({key.text, materialise(*value.tensor, found->second, key.text, file)});
  }
  return out;
}

// Pickle writing: the opcodes of protocol 2 that an OrderedDict of tensors needs.
class PickleWriter {
 public:
  void op(char c) { out_.push_back(c); }
  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module + "\n" + name + "\n";
  }
  void string(const std::string& s) {
    op('X');
    u32(s.size());
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      out_.push_back(static_cast<char>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      op('\x8a');
      out_.push_back(8);
      for (int i = 0; i < 8; ++i)
        out_.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xFF));
    }
  }
  void int_tuple(at::IntArrayRef values) {
    op('(');
    for (int64_t v : values) integer(v);
    op('t');
  }
  std::string& bytes() { return out_; }

 private:
  void u32(uint64_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  std::string out_;
};

}  // namespace

std::vector<NamedTensor> read_torch_state_dict(const fs::path& path, std::string* entry) {
  const std::string file = path.string();
  TORCH_CHECK(fs::is_regular_file(path), "cannot read ", file, ": no such file");
  std::string head(16, '\0');
  {
    std::ifstream in(path, std::ios::binary);
    TORCH_CHECK(in, "cannot read ", file);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
  }
  if (head.rfind("PK\x03\x04", 0) == 0) return read_zip_format(path, entry);
  if (is_legacy_magic(head)) return read_legacy(path, entry);
  TORCH_CHECK(false, file, " is not a torch.save file (neither its zip format nor the legacy one)");
}

void write_torch_state_dict(const fs::path& path, const std::vector<NamedTensor>& tensors) {
  PickleWriter p;
  p.op('\x80');
  p.op('\x02');
  p.global("collections", "OrderedDict");
  p.op(')');
  p.op('R');
  std::vector<std::string> storages;
  if (!tensors.empty()) p.op('(');
  std::set<std::string> names;
  for (const NamedTensor& t : tensors) {
    TORCH_CHECK(names.insert(t.name).second, "two tensors named ", t.name);
    const at::Tensor contiguous = t.tensor.detach().cpu().contiguous();
    const std::string key = std::to_string(storages.size());
    storages.emplace_back(static_cast<const char*>(contiguous.data_ptr()),
                          contiguous.numel() * contiguous.element_size());
    p.string(t.name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');  // the persistent id ('storage', type, key, location, numel)
    p.string("storage");
    p.global("torch", storage_name_of(contiguous.scalar_type()));
    p.string(key);
    p.string("cpu");
    p.integer(contiguous.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);
    p.int_tuple(contiguous.sizes());
    p.int_tuple(contiguous.strides());
    p.op('\x89');  // requires_grad False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    p.op('t');
    p.op('R');
  }
  if (!tensors.empty()) p.op('u');
  p.op('.');
  const std::string archive = path.stem().string().empty() ? "archive" : path.stem().string();
  std::vector<std::pair<std::string, std::string_view>> records;
  records.emplace_back(archive + "/data.pkl", p.bytes());
  records.emplace_back(archive + "/byteorder", "little");
  for (size_t i = 0; i < storages.size(); ++i) {
    records.emplace_back(archive + "/data/" + std::to_string(i), storages[i]);
  }
  records.emplace_back(archive + "/version", "3\n");
  write_text_file(path, zip_stored(records));
}

}  // namespace ssn::io
