#include "ssn/io/zip_check.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace ssn::io {
namespace {

namespace fs = std::filesystem;

uint64_t little_endian(const unsigned char* bytes, int count) {
  uint64_t value = 0;
  for (int i = count - 1; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

class Archive {
 public:
  explicit Archive(const fs::path& path) : path_(path), in_(path, std::ios::binary) {
    TORCH_CHECK(in_, "cannot read the checkpoint ", path.string());
    in_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(in_.tellg());
  }
  uint64_t size() const { return size_; }
  std::vector<unsigned char> read(uint64_t offset, uint64_t count) {
    TORCH_CHECK(offset <= size_ && count <= size_ - offset, path_.string(),
                " is damaged or truncated: a zip structure lies outside the file");
    std::vector<unsigned char> bytes(static_cast<size_t>(count));
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(count));
    TORCH_CHECK(in_, "cannot read ", path_.string());
    return bytes;
  }
  // CRC-32 of `count` bytes at `offset`, stored or deflated (method 0 or 8); checks the
  // uncompressed size too.
  uint32_t crc_of(uint64_t offset, uint64_t count, int method, uint64_t uncompressed,
                  const std::string& name) {
    TORCH_CHECK(offset <= size_ && count <= size_ - offset, path_.string(), ": record ", name,
                " lies outside the file (damaged or truncated)");
    TORCH_CHECK(method == 0 || method == 8, path_.string(), ": record ", name,
                " uses zip compression method ", method, " (0 and 8 are checked)");
    in_.seekg(static_cast<std::streamoff>(offset));
    uLong crc = crc32(0L, Z_NULL, 0);
    std::vector<unsigned char> input(1 << 20), output(1 << 20);
    z_stream stream{};
    if (method == 8) {
      TORCH_CHECK(inflateInit2(&stream, -MAX_WBITS) == Z_OK, "zlib: cannot start inflating");
    }
    uint64_t left = count, produced = 0;
    while (left > 0) {
      const auto take = static_cast<std::streamsize>(std::min<uint64_t>(left, input.size()));
      in_.read(reinterpret_cast<char*>(input.data()), take);
      TORCH_CHECK(in_, "cannot read ", path_.string());
      left -= static_cast<uint64_t>(take);
      if (method == 0) {
        crc = crc32(crc, input.data(), static_cast<uInt>(take));
        produced += static_cast<uint64_t>(take);
        continue;
      }
      stream.next_in = input.data();
      stream.avail_in = static_cast<uInt>(take);
      do {
        stream.next_out = output.data();
        stream.avail_out = static_cast<uInt>(output.size());
        const int status = inflate(&stream, Z_NO_FLUSH);
        if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
          inflateEnd(&stream);
          TORCH_CHECK(false, path_.string(), ": record ", name, " holds damaged compressed data");
        }
        const auto out = static_cast<uInt>(output.size() - stream.avail_out);
        crc = crc32(crc, output.data(), out);
        produced += out;
        if (status == Z_STREAM_END || (status == Z_BUF_ERROR && stream.avail_in == 0)) break;
      } while (stream.avail_in > 0 || stream.avail_out == 0);
    }
    if (method == 8) inflateEnd(&stream);
    TORCH_CHECK(produced == uncompressed, path_.string(), ": record ", name, " holds ", produced,
                " bytes, its directory says ", uncompressed, " (damaged)");
    return static_cast<uint32_t>(crc);
  }

 private:
  fs::path path_;
  std::ifstream in_;
  uint64_t size_ = 0;
};

}  // namespace

void check_zip_integrity(const fs::path& path) {
  Archive archive(path);
  const std::string file = path.string();
  // The end-of-central-directory record: in the last 22 + 65535 bytes.
  const uint64_t window = std::min<uint64_t>(archive.size(), 22 + 65535);
  TORCH_CHECK(window >= 22, file, " is not a zip archive (too short): not an ssn checkpoint");
  const std::vector<unsigned char> tail = archive.read(archive.size() - window, window);
  int64_t end = -1;
  for (int64_t i = static_cast<int64_t>(tail.size()) - 22; i >= 0; --i) {
    if (little_endian(&tail[static_cast<size_t>(i)], 4) == 0x06054b50) {
      end = i;
      break;
    }
  }
  TORCH_CHECK(end >= 0, file,
              " is not a zip archive or its end is missing (truncated): not a whole checkpoint");
  const unsigned char* record = &tail[static_cast<size_t>(end)];
  uint64_t entries = little_endian(record + 10, 2);
  uint64_t directory_size = little_endian(record + 12, 4);
  uint64_t directory_offset = little_endian(record + 16, 4);
  if (entries == 0xFFFF || directory_offset == 0xFFFFFFFF || directory_size == 0xFFFFFFFF) {
    // Zip64: the locator sits 20 bytes before the end record and points at the Zip64 end record.
    const uint64_t locator_at = archive.size() - window + static_cast<uint64_t>(end) - 20;
    const std::vector<unsigned char> locator = archive.read(locator_at, 20);
    TORCH_CHECK(little_endian(locator.data(), 4) == 0x07064b50, file,
                ": damaged zip (no Zip64 locator)");
    const std::vector<unsigned char> end64 = archive.read(little_endian(locator.data() + 8, 8), 56);
    TORCH_CHECK(little_endian(end64.data(), 4) == 0x06064b50, file,
                ": damaged zip (no Zip64 end record)");
    entries = little_endian(end64.data() + 32, 8);
    directory_size = little_endian(end64.data() + 40, 8);
    directory_offset = little_endian(end64.data() + 48, 8);
  }
  const std::vector<unsigned char> directory = archive.read(directory_offset, directory_size);
  size_t at = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    TORCH_CHECK(at + 46 <= directory.size() && little_endian(&directory[at], 4) == 0x02014b50, file,
                ": damaged zip central directory (entry ", e, ")");
    const unsigned char* entry = &directory[at];
    const int method = static_cast<int>(little_endian(entry + 10, 2));
    const auto crc = static_cast<uint32_t>(little_endian(entry + 16, 4));
    uint64_t compressed = little_endian(entry + 20, 4);
    uint64_t uncompressed = little_endian(entry + 24, 4);
    const size_t name_length = little_endian(entry + 28, 2);
    const size_t extra_length = little_endian(entry + 30, 2);
    const size_t comment_length = little_endian(entry + 32, 2);
    uint64_t local = little_endian(entry + 42, 4);
    TORCH_CHECK(at + 46 + name_length + extra_length <= directory.size(), file,
                ": damaged zip central directory (entry ", e, ")");
    const std::string name(reinterpret_cast<const char*>(entry + 46), name_length);
    // Zip64 extra field: the 8-byte values of the fields that hold 0xFFFFFFFF, in order.
    const unsigned char* extra = entry + 46 + name_length;
    for (size_t x = 0; x + 4 <= extra_length;) {
      const uint64_t id = little_endian(extra + x, 2), length = little_endian(extra + x + 2, 2);
      if (id == 0x0001) {
        size_t v = x + 4;
        for (uint64_t* field : {&uncompressed, &compressed, &local}) {
          if (*field == 0xFFFFFFFF && v + 8 <= x + 4 + length) {
            *field = little_endian(extra + v, 8);
            v += 8;
          }
        }
      }
      x += 4 + static_cast<size_t>(length);
    }
    const std::vector<unsigned char> header = archive.read(local, 30);
    TORCH_CHECK(little_endian(header.data(), 4) == 0x04034b50, file, ": record ", name,
                " has no local header where the directory says (damaged)");
    const uint64_t data =
        local + 30 + little_endian(header.data() + 26, 2) + little_endian(header.data() + 28, 2);
    const uint32_t actual = archive.crc_of(data, compressed, method, uncompressed, name);
    TORCH_CHECK(actual == crc, file, ": record ", name,
                " fails its CRC-32 check (the file is damaged): not loading it");
    at += 46 + name_length + extra_length + comment_length;
  }
}

}  // namespace ssn::io
