#include "completeness.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace ssn::io::detail {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

uint64_t size_of(const fs::path& path) {
  std::error_code error;
  const auto size = fs::file_size(path, error);
  TORCH_CHECK(!error, "cannot read ", path.string(), ": ", error.message());
  return size;
}

[[noreturn]] void truncated(const fs::path& path, uint64_t has, uint64_t needs,
                            const char* what = "bytes of pixel data") {
  TORCH_CHECK(false, "cannot read ", path.string(), ": the file is truncated or damaged (", has,
              " ", what, ", its header needs ", needs, ")");
}

// Inflates the stream that starts `offset` bytes into `path` (zlib or gzip framing by
// window_bits; concatenated gzip members are followed) and returns the number of bytes it
// yields, each piece also handed to `sink` when given. A stream that ends early or fails its
// checksum is an error naming the file.
uint64_t inflated_size(const fs::path& path, uint64_t offset, int window_bits,
                       const std::function<void(const unsigned char*, size_t)>& sink = {}) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot read ", path.string());
  in.seekg(static_cast<std::streamoff>(offset));
  z_stream stream{};
  TORCH_CHECK(inflateInit2(&stream, window_bits) == Z_OK, "zlib: cannot start inflating");
  std::vector<unsigned char> input(1 << 20), output(1 << 20);
  uint64_t total = 0;
  bool ended = false;
  const auto fail = [&](const char* what) {
    const std::string message = stream.msg != nullptr ? stream.msg : what;
    inflateEnd(&stream);
    TORCH_CHECK(false, "cannot read ", path.string(), ": damaged compressed data (", message, ")");
  };
  while (!(ended && window_bits < 16)) {
    in.read(reinterpret_cast<char*>(input.data()), static_cast<std::streamsize>(input.size()));
    const auto got = static_cast<uInt>(in.gcount());
    if (got == 0) break;
    stream.next_in = input.data();
    stream.avail_in = got;
    bool output_full = false;
    do {
      if (ended) {
        if (window_bits < 16 || stream.avail_in == 0) break;      // zlib: one stream, rest ignored
        if (inflateReset(&stream) != Z_OK) fail("cannot reset");  // the next gzip member
        ended = false;
      }
      stream.next_out = output.data();
      stream.avail_out = static_cast<uInt>(output.size());
      const int status = inflate(&stream, Z_NO_FLUSH);
      const uint64_t produced = output.size() - stream.avail_out;
      if (sink && produced > 0) sink(output.data(), static_cast<size_t>(produced));
      total += produced;
      if (status == Z_STREAM_END) {
        ended = true;
      } else if (status == Z_BUF_ERROR) {
        break;  // no progress possible without more input
      } else if (status != Z_OK) {
        fail("invalid data");
      }
      output_full = stream.avail_out == 0;
    } while (stream.avail_in > 0 || output_full);
  }
  inflateEnd(&stream);
  TORCH_CHECK(ended, "cannot read ", path.string(),
              ": the compressed data end early (truncated file)");
  return total;
}

constexpr int kZlib = MAX_WBITS;
constexpr int kGzip = 16 + MAX_WBITS;

// NIfTI-1 (sizeof_hdr 348, float vox_offset at byte 108) or NIfTI-2 (540, int64 at 168), either
// byte order: the offset of the pixel data.
uint64_t nifti_data_offset(const fs::path& path, const std::vector<unsigned char>& header) {
  TORCH_CHECK(header.size() >= 348, "cannot read ", path.string(), ": a NIfTI header is 348 bytes");
  int32_t size = 0;
  std::memcpy(&size, header.data(), 4);
  const bool swapped = size != 348 && size != 540;
  const auto swap = [&](unsigned char* bytes, size_t n) {
    if (swapped) std::reverse(bytes, bytes + n);
  };
  std::array<unsigned char, 8> bytes{};
  std::copy(header.begin(), header.begin() + 4, bytes.begin());
  swap(bytes.data(), 4);
  std::memcpy(&size, bytes.data(), 4);
  if (size == 540) {
    TORCH_CHECK(header.size() >= 540, "cannot read ", path.string(), ": short NIfTI-2 header");
    std::copy(header.begin() + 168, header.begin() + 176, bytes.begin());
    swap(bytes.data(), 8);
    int64_t offset = 0;
    std::memcpy(&offset, bytes.data(), 8);
    return static_cast<uint64_t>(std::max<int64_t>(offset, 540));
  }
  TORCH_CHECK(size == 348, "cannot read ", path.string(), ": not a NIfTI header (sizeof_hdr ", size,
              ")");
  std::copy(header.begin() + 108, header.begin() + 112, bytes.begin());
  swap(bytes.data(), 4);
  float offset = 0;
  std::memcpy(&offset, bytes.data(), 4);
  return static_cast<uint64_t>(std::max(offset, 0.0f));
}

// Streams a NIfTI file's bytes: keeps its header, counts the bytes, and looks at every value of
// float32 / float64 data for NaN and infinities (ITK's NIfTI reader turns NaN into 0 silently).
class NiftiScanner {
 public:
  void feed(const unsigned char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (header_.size() < 544) header_.push_back(data[i]);
      if (parsed_ && total_ >= offset_ && element_ > 0) scan(data[i]);
      ++total_;
      if (!parsed_ && header_.size() == 544) parse();
    }
  }
  // The header, once all of it (or the whole file) has been seen.
  void finish() {
    if (!parsed_) parse();
  }
  const std::vector<unsigned char>& header() const { return header_; }
  uint64_t total() const { return total_; }
  bool non_finite() const { return non_finite_; }
  void set_path(const fs::path& path) { path_ = path; }
  uint64_t offset() const { return offset_; }

 private:
  void parse() {
    offset_ = nifti_data_offset(path_, header_);
    int32_t size = 0;
    std::memcpy(&size, header_.data(), 4);
    swapped_ = size != 348 && size != 540;
    const bool nifti2 = size == 540 || (swapped_ && size == 0x1C020000);
    const size_t at = nifti2 ? 12 : 70;
    unsigned char bytes[2] = {header_[at], header_[at + 1]};
    if (swapped_) std::swap(bytes[0], bytes[1]);
    int16_t datatype = 0;
    std::memcpy(&datatype, bytes, 2);
    element_ = datatype == 16 ? 4 : datatype == 64 ? 8 : 0;  // DT_FLOAT32, DT_FLOAT64
    parsed_ = true;
    // Data bytes already held in the header buffer.
    for (uint64_t i = offset_; i < header_.size() && element_ > 0; ++i) scan(header_[i]);
  }
  void scan(unsigned char byte) {
    value_[filled_++] = byte;
    if (filled_ < element_) return;
    filled_ = 0;
    if (swapped_) std::reverse(value_, value_ + element_);
    if (element_ == 4) {
      float v;
      std::memcpy(&v, value_, 4);
      non_finite_ = non_finite_ || !std::isfinite(v);
    } else {
      double v;
      std::memcpy(&v, value_, 8);
      non_finite_ = non_finite_ || !std::isfinite(v);
    }
  }
  fs::path path_;
  std::vector<unsigned char> header_;
  uint64_t total_ = 0, offset_ = 0;
  bool parsed_ = false, swapped_ = false, non_finite_ = false;
  size_t element_ = 0, filled_ = 0;
  unsigned char value_[8] = {};
};

void check_nifti(const fs::path& path, uint64_t data_bytes, bool gzipped) {
  NiftiScanner scanner;
  scanner.set_path(path);
  const auto sink = [&](const unsigned char* data, size_t n) { scanner.feed(data, n); };
  if (gzipped) {
    inflated_size(path, 0, kGzip, sink);
  } else {
    std::ifstream in(path, std::ios::binary);
    TORCH_CHECK(in, "cannot read ", path.string());
    std::vector<unsigned char> chunk(1 << 20);
    while (in) {
      in.read(reinterpret_cast<char*>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
      sink(chunk.data(), static_cast<size_t>(in.gcount()));
    }
  }
  scanner.finish();
  const uint64_t needs = scanner.offset() + data_bytes;
  if (scanner.total() < needs) truncated(path, scanner.total(), needs, "bytes");
  TORCH_CHECK(!scanner.non_finite(), "cannot read ", path.string(),
              ": it holds NaN or infinite values (ssn refuses them rather than read them as 0)");
}

// The text header of a MetaImage or NRRD file: its lines and the offset where data start.
struct TextHeader {
  std::vector<std::pair<std::string, std::string>> fields;  // lower-case key, value
  uint64_t data_offset = 0;
};

// MetaImage: "Key = Value" lines up to and including ElementDataFile.
TextHeader meta_header(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot read ", path.string());
  TextHeader header;
  std::string line;
  while (std::getline(in, line)) {
    const auto equals = line.find('=');
    if (equals == std::string::npos) continue;
    const std::string key = lower(trim(line.substr(0, equals)));
    header.fields.emplace_back(key, trim(line.substr(equals + 1)));
    if (key == "elementdatafile") {
      header.data_offset = static_cast<uint64_t>(in.tellg());
      return header;
    }
  }
  TORCH_CHECK(false, "cannot read ", path.string(), ": a MetaImage header without ElementDataFile");
}

// NRRD: "key: value" lines up to the first empty line.
TextHeader nrrd_header(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot read ", path.string());
  TextHeader header;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if (line[0] == '#') continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    if (!value.empty() && value[0] == '=') value = value.substr(1);  // "key:=value"
    header.fields.emplace_back(lower(trim(line.substr(0, colon))), trim(value));
  }
  header.data_offset = in ? static_cast<uint64_t>(in.tellg()) : size_of(path);
  return header;
}

std::string field(const TextHeader& header, const std::string& key) {
  for (const auto& [name, value] : header.fields) {
    if (name == key) return value;
  }
  return "";
}

// The data of a header file: attached at `offset`, or in a file named relative to the header.
void check_data(const fs::path& header_path, const std::string& data_file, uint64_t offset,
                bool compressed, int window_bits, uint64_t data_bytes) {
  fs::path source = header_path;
  if (!data_file.empty()) {
    source = fs::path(data_file).is_absolute() ? fs::path(data_file)
                                               : header_path.parent_path() / data_file;
    offset = 0;
    TORCH_CHECK(fs::is_regular_file(source), "cannot read ", header_path.string(),
                ": its data file ", source.string(), " does not exist");
  }
  const uint64_t has = compressed ? inflated_size(source, offset, window_bits)
                                  : size_of(source) - std::min(offset, size_of(source));
  if (has < data_bytes) truncated(source, has, data_bytes);
}

void check_meta(const fs::path& path, uint64_t data_bytes) {
  const TextHeader header = meta_header(path);
  const std::string data_file = field(header, "elementdatafile");
  TORCH_CHECK(
      !data_file.empty() && lower(data_file) != "list" && data_file.find('%') == std::string::npos,
      "cannot read ", path.string(), ": ElementDataFile = ", data_file,
      " (lists and patterns of files) cannot be checked for completeness");
  const bool compressed = lower(field(header, "compresseddata")) == "true";
  check_data(path, lower(data_file) == "local" ? "" : data_file, header.data_offset, compressed,
             kZlib, data_bytes);
}

void check_nrrd(const fs::path& path, uint64_t data_bytes) {
  const TextHeader header = nrrd_header(path);
  const std::string encoding = lower(field(header, "encoding"));
  if (encoding == "ascii" || encoding == "text" || encoding == "txt" || encoding == "hex") return;
  TORCH_CHECK(encoding == "raw" || encoding == "gzip" || encoding == "gz", "cannot read ",
              path.string(), ": NRRD encoding '", encoding,
              "' cannot be checked for completeness (raw, gzip and text are)");
  std::string data_file = field(header, "data file");
  if (data_file.empty()) data_file = field(header, "datafile");
  check_data(path, data_file, header.data_offset, encoding != "raw", kGzip, data_bytes);
}

void check_png(const fs::path& path) {
  static const unsigned char kEnd[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  const uint64_t size = size_of(path);
  std::ifstream in(path, std::ios::binary);
  unsigned char tail[12] = {};
  if (size >= 12) {
    in.seekg(static_cast<std::streamoff>(size - 12));
    in.read(reinterpret_cast<char*>(tail), 12);
  }
  TORCH_CHECK(size >= 12 && in && std::memcmp(tail, kEnd, 12) == 0, "cannot read ", path.string(),
              ": the PNG file is truncated or damaged (no IEND chunk at its end)");
}

}  // namespace

void check_complete(const fs::path& path, uint64_t data_bytes) {
  const std::string name = lower(path.filename().string());
  if (ends_with(name, ".nii.gz")) {
    check_nifti(path, data_bytes, /*gzipped=*/true);
  } else if (ends_with(name, ".nii")) {
    check_nifti(path, data_bytes, /*gzipped=*/false);
  } else if (ends_with(name, ".mha") || ends_with(name, ".mhd")) {
    check_meta(path, data_bytes);
  } else if (ends_with(name, ".nrrd") || ends_with(name, ".nhdr")) {
    check_nrrd(path, data_bytes);
  } else if (ends_with(name, ".png")) {
    check_png(path);
  }
}

}  // namespace ssn::io::detail
