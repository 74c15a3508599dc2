#include "ssn/io/pickle.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

namespace ssn::io::pickle {
namespace {

// Deeper structures are refused: freeing one recurses once per level.
constexpr int64_t kMaxNesting = 1000;

Value make(Kind kind) {
  Value v;
  v.kind = kind;
  return v;
}

Value make_items(Kind kind, Items items) {
  Value v = make(kind);
  v.items = std::make_shared<Items>(std::move(items));
  return v;
}

// NumPy 2 moved numpy.core to numpy._core; both spellings name the same functions.
std::string canonical_module(const std::string& module) {
  if (module.rfind("numpy._core", 0) == 0) return "numpy.core" + module.substr(11);
  return module;
}

const std::set<std::string>& numpy_globals() {
  static const std::set<std::string> names = {"numpy.core.multiarray._reconstruct",
                                              "numpy.ndarray",
                                              "numpy.dtype",
                                              "numpy.core.multiarray.scalar",
                                              "numpy.core.numeric._frombuffer",
                                              "_codecs.encode"};
  return names;
}

const std::set<std::string>& torch_globals() {
  static const std::set<std::string> names = {"collections.OrderedDict",
                                              "torch._utils._rebuild_tensor_v2",
                                              "torch._utils._rebuild_parameter",
                                              "torch.FloatStorage",
                                              "torch.DoubleStorage",
                                              "torch.HalfStorage",
                                              "torch.BFloat16Storage",
                                              "torch.LongStorage",
                                              "torch.IntStorage",
                                              "torch.ShortStorage",
                                              "torch.CharStorage",
                                              "torch.ByteStorage",
                                              "torch.BoolStorage"};
  return names;
}

// Bytes per element of a NumPy descr's type ("f4" -> 4), checked against the known kinds.
bool known_numpy_type(const std::string& type) {
  static const std::set<std::string> types = {"b1", "u1", "i1", "u2", "i2", "u4",
                                              "i4", "u8", "i8", "f2", "f4", "f8"};
  return types.count(type) > 0;
}

class Reader {
 public:
  Reader(const char* data, size_t size, const std::string& what, const Permissions& permissions)
      : data_(reinterpret_cast<const unsigned char*>(data)),
        size_(size),
        what_(what),
        permissions_(permissions) {}

  Value run(size_t begin, size_t* end) {
    pos_ = begin;
    for (;;) {
      TORCH_CHECK(pos_ < size_, what_, ": the pickle ends before its STOP opcode (truncated)");
      opcode_at_ = pos_;
      const unsigned char op = data_[pos_++];
      if (op == '.') {
        TORCH_CHECK(stack_.size() == 1 && marks_.empty(), what_,
                    ": damaged pickle (the stack holds ", stack_.size(), " values at STOP)");
        if (end != nullptr) *end = pos_;
        return stack_.back();
      }
      step(op);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    TORCH_CHECK(false, what_, ": ", message, " (pickle opcode at byte ", opcode_at_, ")");
  }

  uint64_t unsigned_le(size_t n) {
    if (n > size_ - pos_) fail("the pickle is truncated");
    uint64_t value = 0;
    for (size_t i = n; i-- > 0;) value = (value << 8) | data_[pos_ + i];
    pos_ += n;
    return value;
  }

  Bytes take(uint64_t n) {
    if (n > size_ - pos_) fail("the pickle is truncated (a string runs past its end)");
    Bytes b{reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n), nullptr};
    pos_ += static_cast<size_t>(n);
    return b;
  }

  std::string line() {
    const size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ >= size_) fail("the pickle is truncated (a line has no end)");
    return std::string(reinterpret_cast<const char*>(data_ + start), pos_++ - start);
  }

  Value pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("damaged pickle (a value is taken from an empty stack)");
    }
    Value v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }

  Value& top() {
    if (stack_.empty()) fail("damaged pickle (empty stack)");
    return stack_.back();
  }

  Items pop_to_mark() {
    if (marks_.empty()) fail("damaged pickle (no MARK)");
    const size_t mark = marks_.back();
    marks_.pop_back();
    if (mark > stack_.size()) fail("damaged pickle (MARK above the stack)");
    Items items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }

  Value string_value(Bytes b) {
    Value v = make(Kind::kString);
    v.text.assign(b.data, b.size);
    return v;
  }

  Value bytes_value(Bytes b) {
    Value v = make(Kind::kBytes);
    v.bytes = b;
    return v;
  }

  Value int_value(int64_t i) {
    Value v = make(Kind::kInt);
    v.integer = i;
    return v;
  }

  Value long_value(uint64_t n) {
    if (n > 8) fail("an integer of " + std::to_string(n) + " bytes is larger than ssn reads");
    if (n == 0) return int_value(0);
    uint64_t raw = unsigned_le(static_cast<size_t>(n));
    if (n < 8 && (raw >> (8 * n - 1)) & 1) raw |= ~uint64_t{0} << (8 * n);  // sign-extend
    return int_value(static_cast<int64_t>(raw));
  }

  Value global(const std::string& module_in, const std::string& name) {
    const std::string full = canonical_module(module_in) + "." + name;
    const bool allowed = (permissions_.numpy && numpy_globals().count(full) > 0) ||
                         (permissions_.torch && torch_globals().count(full) > 0);
    if (!allowed) {
      fail("refuses to build " + module_in + "." + name +
           ": ssn reads pickles without running them and builds only plain data" +
           (permissions_.numpy ? ", NumPy arrays" : "") +
           (permissions_.torch ? ", tensors and OrderedDicts" : "") +
           " (is this the expected kind of file?)");
    }
    Value v = make(Kind::kGlobal);
    v.text = full;
    return v;
  }

  // Nesting: `child` goes into the container `parent`. pickle.dump fills every container before
  // it nests it in another, so a container changed after that, or one that contains itself, is
  // refused: the structure is then a tree (shared leaves aside) of known height, and freeing it
  // can neither recurse past kMaxNesting nor leak a cycle.
  static std::shared_ptr<const void> container_of(const Value& v) {
    if (v.items) return v.items;
    if (v.entries) return v.entries;
    return nullptr;
  }
  void adopt(const Value& parent, const Value& child) {
    const std::shared_ptr<const void> c = container_of(child);
    if (c == nullptr) return;
    const std::shared_ptr<const void> p = container_of(parent);
    if (c == p) fail("a structure that contains itself (not read)");
    if (nested_.count(p) > 0) fail("a structure changed after it was nested in another (not read)");
    nested_.insert(c);
    const auto found = heights_.find(c);
    const int64_t height = (found == heights_.end() ? 1 : found->second) + 1;
    int64_t& current = heights_[p];
    current = std::max(current, height);
    if (current > kMaxNesting) fail("structures nested deeper than " + std::to_string(kMaxNesting));
  }
  Value container(Kind kind, Items items) {
    Value v = make_items(kind, std::move(items));
    for (const Value& item : *v.items) adopt(v, item);
    return v;
  }
  void append(Value& list, Value item) {
    adopt(list, item);
    list.items->push_back(std::move(item));
  }

  void set_items(Value& dict, Items items) {
    if (!dict.is(Kind::kDict)) fail("damaged pickle (SETITEMS on " + dict.describe() + ")");
    if (items.size() % 2 != 0) fail("damaged pickle (odd number of dict items)");
    for (size_t i = 0; i < items.size(); i += 2) {
      adopt(dict, items[i]);
      adopt(dict, items[i + 1]);
      dict.entries->emplace_back(std::move(items[i]), std::move(items[i + 1]));
    }
  }

  std::vector<int64_t> int_tuple(const Value& v, const std::string& what) {
    if (!v.is(Kind::kTuple) && !v.is(Kind::kList)) fail(what + " is " + v.describe());
    std::vector<int64_t> out;
    for (const Value& item : *v.items) {
      if (!item.is(Kind::kInt)) fail(what + " holds " + item.describe());
      out.push_back(item.integer);
    }
    return out;
  }

  const Items& args_of(const Value& args, size_t at_least, const std::string& callee) {
    if (!args.is(Kind::kTuple) || args.items->size() < at_least) {
      fail("damaged pickle (" + callee + " called with " + args.describe() + ")");
    }
    return *args.items;
  }

  Value dtype_value(const std::string& descr) {
    const std::string type = descr.size() == 3 ? descr.substr(1) : descr;
    if (!known_numpy_type(type)) fail("NumPy dtype '" + descr + "' is not one ssn reads");
    Value v = make(Kind::kDtype);
    v.text = descr.size() == 3 ? descr : "|" + descr;  // byte order set by BUILD
    return v;
  }

  Value array_value(const Value& dtype, std::vector<int64_t> shape, bool fortran, Bytes data) {
    if (!dtype.is(Kind::kDtype)) fail("a NumPy array with dtype " + dtype.describe());
    int64_t count = 1;
    for (int64_t s : shape) {
      if (s < 0 || (s > 0 && count > (int64_t{1} << 50) / s)) fail("a NumPy array of bad shape");
      count *= s;
    }
    const int64_t item = std::stoll(dtype.text.substr(2));
    if (static_cast<uint64_t>(count * item) != data.size) {
      fail("a NumPy array of " + std::to_string(count) + " elements of " + dtype.text + " holds " +
           std::to_string(data.size) + " bytes");
    }
    Value v = make(Kind::kArray);
    v.array = std::make_shared<Array>();
    v.array->dtype = dtype.text[0] == '=' ? "<" + dtype.text.substr(1) : dtype.text;
    v.array->shape = std::move(shape);
    v.array->fortran_order = fortran;
    v.array->data = data;
    return v;
  }

  Value reduce(const Value& callable, const Value& args) {
    if (!callable.is(Kind::kGlobal)) fail("damaged pickle (REDUCE of " + callable.describe() + ")");
    const std::string& f = callable.text;
    if (f == "collections.OrderedDict") {
      if (!args.is(Kind::kTuple) || !args.items->empty()) fail("OrderedDict with arguments");
      Value v = make(Kind::kDict);
      v.entries = std::make_shared<Entries>();
      return v;
    }
    if (f == "numpy.core.multiarray._reconstruct") {
      const Items& a = args_of(args, 1, f);
      if (!a[0].is(Kind::kGlobal) || a[0].text != "numpy.ndarray") {
        fail("_reconstruct of " + a[0].describe() + " (only numpy.ndarray is read)");
      }
      Value v = make(Kind::kArray);  // filled by BUILD
      return v;
    }
    if (f == "numpy.dtype") {
      const Items& a = args_of(args, 1, f);
      if (!a[0].is(Kind::kString)) fail("numpy.dtype of " + a[0].describe());
      return dtype_value(a[0].text);
    }
    if (f == "numpy.core.multiarray.scalar") {
      const Items& a = args_of(args, 2, f);
      if (!a[0].is(Kind::kDtype) || !a[1].is(Kind::kBytes)) fail("damaged NumPy scalar");
      Value array = array_value(a[0], {}, false, a[1].bytes);
      return scalar_of(*array.array);
    }
    if (f == "numpy.core.numeric._frombuffer") {
      const Items& a = args_of(args, 4, f);
      if (!a[0].is(Kind::kBytes) || !a[3].is(Kind::kString)) fail("damaged NumPy buffer");
      return array_value(a[1], int_tuple(a[2], "a NumPy shape"), a[3].text == "F", a[0].bytes);
    }
    if (f == "_codecs.encode") {
      const Items& a = args_of(args, 2, f);
      if (!a[0].is(Kind::kString) || !a[1].is(Kind::kString) ||
          (a[1].text != "latin1" && a[1].text != "latin-1")) {
        fail("_codecs.encode is read only for latin-1 strings (protocol 2's bytes)");
      }
      // The str is UTF-8 in the pickle; latin-1 maps each code point below 256 to one byte.
      auto owned = std::make_shared<std::string>();
      const std::string& s = a[0].text;
      for (size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
          owned->push_back(static_cast<char>(c));
        } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && c <= 0xC3) {
          owned->push_back(static_cast<char>(((c & 0x1F) << 6) | (s[++i] & 0x3F)));
        } else {
          fail("_codecs.encode of a string that is not latin-1");
        }
      }
      Value v = make(Kind::kBytes);
      v.bytes = Bytes{owned->data(), owned->size(), owned};
      return v;
    }
    if (f == "torch._utils._rebuild_tensor_v2") {
      const Items& a = args_of(args, 4, f);
      if (!a[0].is(Kind::kStorage) || !a[1].is(Kind::kInt)) fail("damaged tensor record");
      Value v = make(Kind::kTensor);
      v.tensor = std::make_shared<TensorRef>(*a[0].tensor);
      v.tensor->offset = a[1].integer;
      v.tensor->size = int_tuple(a[2], "a tensor's size");
      v.tensor->stride = int_tuple(a[3], "a tensor's stride");
      if (v.tensor->size.size() != v.tensor->stride.size())
        fail("a tensor's size and stride differ");
      return v;
    }
    if (f == "torch._utils._rebuild_parameter") {
      const Items& a = args_of(args, 1, f);
      if (!a[0].is(Kind::kTensor)) fail("a parameter of " + a[0].describe());
      return a[0];
    }
    fail("cannot call " + f);
  }

  Value scalar_of(const Array& a) {
    const char kind = a.dtype[1];
    const int64_t size = std::stoll(a.dtype.substr(2));
    if (a.dtype[0] == '>' && size > 1) fail("big-endian NumPy data is not read");
    if (kind == 'f') {
      Value v = make(Kind::kFloat);
      if (size == 8) {
        std::memcpy(&v.real, a.data.data, 8);
      } else if (size == 4) {
        float f;
        std::memcpy(&f, a.data.data, 4);
        v.real = f;
      } else {
        fail("a float16 NumPy scalar");
      }
      return v;
    }
    if (kind == 'b') {
      Value v = make(Kind::kBool);
      v.boolean = a.data.data[0] != 0;
      return v;
    }
    uint64_t raw = 0;
    for (int64_t i = size; i-- > 0;) raw = (raw << 8) | static_cast<unsigned char>(a.data.data[i]);
    if (kind == 'i' && size < 8 && ((raw >> (8 * size - 1)) & 1)) raw |= ~uint64_t{0} << (8 * size);
    return int_value(static_cast<int64_t>(raw));
  }

  void build(Value& target, const Value& state) {
    if (target.is(Kind::kArray) && target.array == nullptr) {
      const Items& s = args_of(state, 5, "ndarray.__setstate__");
      if (!s[4].is(Kind::kBytes)) fail("a NumPy array of Python objects (not read)");
      if (!s[3].is(Kind::kBool)) fail("damaged NumPy array state");
      target = array_value(s[2], int_tuple(s[1], "a NumPy shape"), s[3].boolean, s[4].bytes);
      return;
    }
    if (target.is(Kind::kDtype)) {
      const Items& s = args_of(state, 2, "dtype.__setstate__");
      if (!s[1].is(Kind::kString) || s[1].text.size() != 1) fail("damaged NumPy dtype state");
      if (s.size() > 3 && !s[3].is(Kind::kNone)) fail("a structured NumPy dtype (not read)");
      target.text = s[1].text + target.text.substr(1);
      return;
    }
    if (target.is(Kind::kDict) && (state.is(Kind::kDict) || state.is(Kind::kNone))) {
      return;  // an OrderedDict's attributes (a state_dict's _metadata): not needed
    }
    if (target.is(Kind::kTensor)) return;  // a tensor's Python attributes
    fail("damaged pickle (BUILD of " + target.describe() + ")");
  }

  Value persistent(const Value& pid) {
    if (!permissions_.torch) fail("a persistent id in a file that should have none");
    if (!pid.is(Kind::kTuple) || pid.items->size() < 5) fail("damaged persistent id");
    const Items& p = *pid.items;
    if (!p[0].is(Kind::kString) || p[0].text != "storage" || !p[1].is(Kind::kGlobal) ||
        !p[2].is(Kind::kString) || !p[4].is(Kind::kInt)) {
      fail("a persistent id that is not a PyTorch storage");
    }
    if (p.size() > 5 && !p[5].is(Kind::kNone)) fail("a legacy storage view (not read)");
    Value v = make(Kind::kStorage);
    v.tensor = std::make_shared<TensorRef>();
    v.tensor->storage_key = p[2].text;
    v.tensor->storage_type = p[1].text.substr(std::string("torch.").size());
    v.tensor->storage_numel = p[4].integer;
    return v;
  }

  void memo_put(uint64_t index) { memo_[index] = top(); }
  Value memo_get(uint64_t index) {
    const auto found = memo_.find(index);
    if (found == memo_.end()) fail("damaged pickle (memo entry " + std::to_string(index) + ")");
    return found->second;
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80: {  // PROTO
        const uint64_t protocol = unsigned_le(1);
        if (protocol < 2 || protocol > 5) fail("pickle protocol " + std::to_string(protocol));
        return;
      }
      case 0x95:  // FRAME: the frame's bytes follow in line
        unsigned_le(8);
        return;
      case '(':
        marks_.push_back(stack_.size());
        return;
      case '0':
        pop();
        return;
      case '1':
        pop_to_mark();
        return;
      case '2':
        stack_.push_back(top());
        return;
      case 'N':
        stack_.push_back(make(Kind::kNone));
        return;
      case 0x88:
      case 0x89: {
        Value v = make(Kind::kBool);
        v.boolean = op == 0x88;
        stack_.push_back(v);
        return;
      }
      case 'J':
        stack_.push_back(int_value(static_cast<int32_t>(unsigned_le(4))));
        return;
      case 'K':
        stack_.push_back(int_value(static_cast<int64_t>(unsigned_le(1))));
        return;
      case 'M':
        stack_.push_back(int_value(static_cast<int64_t>(unsigned_le(2))));
        return;
      case 0x8a:
        stack_.push_back(long_value(unsigned_le(1)));
        return;
      case 0x8b:
        stack_.push_back(long_value(unsigned_le(4)));
        return;
      case 'G': {
        const uint64_t raw = unsigned_le(8);
        uint64_t swapped = 0;  // big-endian in the pickle
        for (int i = 0; i < 8; ++i) swapped |= ((raw >> (8 * i)) & 0xFF) << (8 * (7 - i));
        Value v = make(Kind::kFloat);
        std::memcpy(&v.real, &swapped, 8);
        stack_.push_back(v);
        return;
      }
      case 'X':
        stack_.push_back(string_value(take(unsigned_le(4))));
        return;
      case 0x8c:
        stack_.push_back(string_value(take(unsigned_le(1))));
        return;
      case 0x8d:
        stack_.push_back(string_value(take(unsigned_le(8))));
        return;
      case 'T':  // Python 2 str
        stack_.push_back(string_value(take(unsigned_le(4))));
        return;
      case 'U':
        stack_.push_back(string_value(take(unsigned_le(1))));
        return;
      case 'B':
        stack_.push_back(bytes_value(take(unsigned_le(4))));
        return;
      case 'C':
        stack_.push_back(bytes_value(take(unsigned_le(1))));
        return;
      case 0x8e:
      case 0x96:  // BINBYTES8, BYTEARRAY8
        stack_.push_back(bytes_value(take(unsigned_le(8))));
        return;
      case ')':
        stack_.push_back(make_items(Kind::kTuple, {}));
        return;
      case 't':
        stack_.push_back(container(Kind::kTuple, pop_to_mark()));
        return;
      case 0x85:
      case 0x86:
      case 0x87: {
        Items items(static_cast<size_t>(op - 0x84));
        for (size_t i = items.size(); i-- > 0;) items[i] = pop();
        stack_.push_back(container(Kind::kTuple, std::move(items)));
        return;
      }
      case ']':
        stack_.push_back(make_items(Kind::kList, {}));
        return;
      case 'l':
        stack_.push_back(container(Kind::kList, pop_to_mark()));
        return;
      case 'a': {
        Value v = pop();
        Value& list = top();
        if (!list.is(Kind::kList)) fail("damaged pickle (APPEND to " + list.describe() + ")");
        append(list, std::move(v));
        return;
      }
      case 'e': {
        Items items = pop_to_mark();
        Value& list = top();
        if (!list.is(Kind::kList)) fail("damaged pickle (APPENDS to " + list.describe() + ")");
        for (Value& v : items) append(list, std::move(v));
        return;
      }
      case '}': {
        Value v = make(Kind::kDict);
        v.entries = std::make_shared<Entries>();
        stack_.push_back(v);
        return;
      }
      case 'd': {
        Value v = make(Kind::kDict);
        v.entries = std::make_shared<Entries>();
        set_items(v, pop_to_mark());
        stack_.push_back(v);
        return;
      }
      case 's': {
        Value value = pop();
        Value key = pop();
        Items pair;
        pair.push_back(std::move(key));
        pair.push_back(std::move(value));
        set_items(top(), std::move(pair));
        return;
      }
      case 'u': {
        Items items = pop_to_mark();
        set_items(top(), std::move(items));
        return;
      }
      case 'c': {
        const std::string module = line();
        const std::string name = line();
        stack_.push_back(global(module, name));
        return;
      }
      case 0x93: {
        const Value name = pop();
        const Value module = pop();
        if (!name.is(Kind::kString) || !module.is(Kind::kString)) fail("damaged STACK_GLOBAL");
        stack_.push_back(global(module.text, name.text));
        return;
      }
      case 'R': {
        const Value args = pop();
        const Value callable = pop();
        stack_.push_back(reduce(callable, args));
        return;
      }
      case 'b': {
        const Value state = pop();
        build(top(), state);
        return;
      }
      case 'Q': {
        const Value pid = pop();
        stack_.push_back(persistent(pid));
        return;
      }
      case 'q':
        memo_put(unsigned_le(1));
        return;
      case 'r':
        memo_put(unsigned_le(4));
        return;
      case 0x94:
        memo_put(memo_.size());
        return;
      case 'h':
        stack_.push_back(memo_get(unsigned_le(1)));
        return;
      case 'j':
        stack_.push_back(memo_get(unsigned_le(4)));
        return;
      case 'p':
      case 'g': {
        const std::string digits = line();
        char* end = nullptr;
        const unsigned long long index = std::strtoull(digits.c_str(), &end, 10);
        if (digits.empty() || *end != '\0') fail("damaged memo index");
        if (op == 'p') {
          memo_put(index);
        } else {
          stack_.push_back(memo_get(index));
        }
        return;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("pickle opcode ") + hex +
             " is not one ssn reads (damaged file, or a kind of object ssn does not build)");
      }
    }
  }

  const unsigned char* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t opcode_at_ = 0;
  std::string what_;
  Permissions permissions_;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  // Held, not just named: a freed container's address may come back for a new one.
  std::map<std::shared_ptr<const void>, int64_t> heights_;  ///< containers holding containers
  std::set<std::shared_ptr<const void>> nested_;            ///< containers inside another
};

}  // namespace

std::string Value::describe() const {
  switch (kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "a bool";
    case Kind::kInt:
      return "an int";
    case Kind::kFloat:
      return "a float";
    case Kind::kString:
      return "a str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kTuple:
      return "a tuple of " + std::to_string(items->size());
    case Kind::kList:
      return "a list of " + std::to_string(items->size());
    case Kind::kDict:
      return "a dict of " + std::to_string(entries->size());
    case Kind::kGlobal:
      return text;
    case Kind::kArray:
      return array == nullptr ? "an unfinished NumPy array"
                              : "a NumPy array (" + array->dtype + ")";
    case Kind::kDtype:
      return "a NumPy dtype";
    case Kind::kStorage:
      return "a storage";
    case Kind::kTensor:
      return "a tensor";
  }
  return "a value";
}

const Value* Value::find(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : *entries) {
    if (k.is(Kind::kString) && k.text == key) return &v;
  }
  return nullptr;
}

Value read(const char* data, size_t size, const std::string& what, const Permissions& permissions,
           size_t begin, size_t* end) {
  TORCH_CHECK(begin <= size, what, ": nothing to read");
  return Reader(data, size, what, permissions).run(begin, end);
}

MappedFile::MappedFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, "cannot read ", path, ": ", std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    TORCH_CHECK(false, "cannot read ", path, ": ", std::strerror(error));
  }
  size_ = static_cast<size_t>(info.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int error = errno;
    ::close(fd);
    TORCH_CHECK(mapped != MAP_FAILED, "cannot map ", path, ": ", std::strerror(error));
    data_ = static_cast<const char*>(mapped);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

}  // namespace ssn::io::pickle
