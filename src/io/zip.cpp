#include "ssn/io/zip.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
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

void put_little_endian(std::string& out, uint64_t value, int count) {
  for (int i = 0; i < count; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

}  // namespace

ZipReader::ZipReader(const fs::path& path) : path_(path), in_(path, std::ios::binary) {
  const std::string file = path.string();
  TORCH_CHECK(in_, "cannot read ", file);
  in_.seekg(0, std::ios::end);
  size_ = static_cast<uint64_t>(in_.tellg());
  // The end-of-central-directory record: in the last 22 + 65535 bytes.
  const uint64_t window = std::min<uint64_t>(size_, 22 + 65535);
  TORCH_CHECK(window >= 22, file, " is not a zip archive (too short)");
  const std::vector<unsigned char> tail = read_at(size_ - window, window);
  int64_t end = -1;
  for (int64_t i = static_cast<int64_t>(tail.size()) - 22; i >= 0; --i) {
    if (little_endian(&tail[static_cast<size_t>(i)], 4) == 0x06054b50) {
      end = i;
      break;
    }
  }
  TORCH_CHECK(end >= 0, file, " is not a zip archive or its end is missing (truncated)");
  const unsigned char* record = &tail[static_cast<size_t>(end)];
  uint64_t entries = little_endian(record + 10, 2);
  uint64_t directory_size = little_endian(record + 12, 4);
  uint64_t directory_offset = little_endian(record + 16, 4);
  if (entries == 0xFFFF || directory_offset == 0xFFFFFFFF || directory_size == 0xFFFFFFFF) {
    // Zip64: the locator sits 20 bytes before the end record and points at the Zip64 end record.
    TORCH_CHECK(size_ - window + static_cast<uint64_t>(end) >= 20, file,
                ": damaged zip (no Zip64 locator)");
    const uint64_t locator_at = size_ - window + static_cast<uint64_t>(end) - 20;
    const std::vector<unsigned char> locator = read_at(locator_at, 20);
    TORCH_CHECK(little_endian(locator.data(), 4) == 0x07064b50, file,
                ": damaged zip (no Zip64 locator)");
    const std::vector<unsigned char> end64 = read_at(little_endian(locator.data() + 8, 8), 56);
    TORCH_CHECK(little_endian(end64.data(), 4) == 0x06064b50, file,
                ": damaged zip (no Zip64 end record)");
    entries = little_endian(end64.data() + 32, 8);
    directory_size = little_endian(end64.data() + 40, 8);
    directory_offset = little_endian(end64.data() + 48, 8);
  }
  const std::vector<unsigned char> directory = read_at(directory_offset, directory_size);
  size_t at = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    TORCH_CHECK(at + 46 <= directory.size() && little_endian(&directory[at], 4) == 0x02014b50, file,
                ": damaged zip central directory (entry ", e, ")");
    const unsigned char* entry = &directory[at];
    ZipRecord r;
    r.method = static_cast<int>(little_endian(entry + 10, 2));
    r.crc = static_cast<uint32_t>(little_endian(entry + 16, 4));
    r.compressed = little_endian(entry + 20, 4);
    r.uncompressed = little_endian(entry + 24, 4);
    const size_t name_length = little_endian(entry + 28, 2);
    const size_t extra_length = little_endian(entry + 30, 2);
    const size_t comment_length = little_endian(entry + 32, 2);
    r.local_header = little_endian(entry + 42, 4);
    TORCH_CHECK(at + 46 + name_length + extra_length <= directory.size(), file,
                ": damaged zip central directory (entry ", e, ")");
    r.name.assign(reinterpret_cast<const char*>(entry + 46), name_length);
    // Zip64 extra field: the 8-byte values of the fields that hold 0xFFFFFFFF, in order.
    const unsigned char* extra = entry + 46 + name_length;
    for (size_t x = 0; x + 4 <= extra_length;) {
      const uint64_t id = little_endian(extra + x, 2), length = little_endian(extra + x + 2, 2);
      if (id == 0x0001) {
        size_t v = x + 4;
        for (uint64_t* field : {&r.uncompressed, &r.compressed, &r.local_header}) {
          if (*field == 0xFFFFFFFF && v + 8 <= x + 4 + length && v + 8 <= extra_length) {
            *field = little_endian(extra + v, 8);
            v += 8;
          }
        }
      }
      x += 4 + static_cast<size_t>(length);
    }
    records_.push_back(std::move(r));
    at += 46 + name_length + extra_length + comment_length;
  }
}

const ZipRecord* ZipReader::find(const std::string& name) const {
  for (const ZipRecord& r : records_) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

std::vector<unsigned char> ZipReader::read_at(uint64_t offset, uint64_t count) {
  TORCH_CHECK(offset <= size_ && count <= size_ - offset, path_.string(),
              " is damaged or truncated: a zip structure lies outside the file");
  std::vector<unsigned char> bytes(static_cast<size_t>(count));
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(offset));
  in_.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(count));
  TORCH_CHECK(in_, "cannot read ", path_.string());
  return bytes;
}

uint64_t ZipReader::data_offset(const ZipRecord& record) {
  const std::vector<unsigned char> header = read_at(record.local_header, 30);
  TORCH_CHECK(little_endian(header.data(), 4) == 0x04034b50, path_.string(), ": record ",
              record.name, " has no local header where the directory says (damaged)");
  return record.local_header + 30 + little_endian(header.data() + 26, 2) +
         little_endian(header.data() + 28, 2);
}

std::string ZipReader::read(const ZipRecord& record) {
  const std::string file = path_.string();
  const uint64_t offset = data_offset(record);
  TORCH_CHECK(offset <= size_ && record.compressed <= size_ - offset, file, ": record ",
              record.name, " lies outside the file (damaged or truncated)");
  TORCH_CHECK(record.method == 0 || record.method == 8, file, ": record ", record.name,
              " uses zip compression method ", record.method, " (ssn reads 0 and 8)");
  std::string out;
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(offset));
  if (record.method == 0) {
    TORCH_CHECK(record.compressed == record.uncompressed, file, ": record ", record.name,
                " is stored with two sizes (damaged)");
    out.resize(static_cast<size_t>(record.compressed));
    in_.read(out.data(), static_cast<std::streamsize>(out.size()));
    TORCH_CHECK(in_, "cannot read ", file);
  } else {
    z_stream stream{};
    TORCH_CHECK(inflateInit2(&stream, -MAX_WBITS) == Z_OK, "zlib: cannot start inflating");
    std::vector<unsigned char> input(1 << 20), output(1 << 20);
    uint64_t left = record.compressed;
    int status = Z_OK;
    while (left > 0 && status != Z_STREAM_END) {
      const auto take = static_cast<std::streamsize>(std::min<uint64_t>(left, input.size()));
      in_.read(reinterpret_cast<char*>(input.data()), take);
      if (!in_) {
        inflateEnd(&stream);
        TORCH_CHECK(false, "cannot read ", file);
      }
      left -= static_cast<uint64_t>(take);
      stream.next_in = input.data();
      stream.avail_in = static_cast<uInt>(take);
      do {
        stream.next_out = output.data();
        stream.avail_out = static_cast<uInt>(output.size());
        status = inflate(&stream, Z_NO_FLUSH);
        if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
          inflateEnd(&stream);
          TORCH_CHECK(false, file, ": record ", record.name, " holds damaged compressed data");
        }
        out.append(reinterpret_cast<const char*>(output.data()), output.size() - stream.avail_out);
        TORCH_CHECK(out.size() <= record.uncompressed, file, ": record ", record.name,
                    " inflates to more than its directory says (damaged)");
        if (status == Z_STREAM_END || (status == Z_BUF_ERROR && stream.avail_in == 0)) break;
      } while (stream.avail_in > 0 || stream.avail_out == 0);
    }
    inflateEnd(&stream);
  }
  TORCH_CHECK(out.size() == record.uncompressed, file, ": record ", record.name, " holds ",
              out.size(), " bytes, its directory says ", record.uncompressed, " (damaged)");
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t at = 0; at < out.size(); at += (1u << 30)) {
    const size_t n = std::min<size_t>(out.size() - at, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + at), static_cast<uInt>(n));
  }
  TORCH_CHECK(static_cast<uint32_t>(crc) == record.crc, file, ": record ", record.name,
              " fails its CRC-32 check (the file is damaged): not loading it");
  return out;
}

void check_zip_integrity(const fs::path& path) {
  ZipReader archive(path);
  for (const ZipRecord& record : archive.records()) archive.read(record);
}

std::string zip_stored(const std::vector<std::pair<std::string, std::string_view>>& records) {
  std::string out, directory;
  for (const auto& [name, contents] : records) {
    TORCH_CHECK(name.size() < 0xFFFF, "zip: record name too long: ", name);
    const uint64_t local = out.size();
    TORCH_CHECK(local < 0xFFFFFFFFull && contents.size() < 0xFFFFFFFFull,
                "zip: the archive would need Zip64 (4 GiB or more), which ssn does not write");
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t at = 0; at < contents.size(); at += (1u << 30)) {
      const size_t n = std::min<size_t>(contents.size() - at, 1u << 30);
      crc = crc32(crc, reinterpret_cast<const Bytef*>(contents.data() + at), static_cast<uInt>(n));
    }
    // Padding in an extra field (id 0x4246, "FB", as PyTorch) puts the data at a multiple of 64.
    const uint64_t unpadded = local + 30 + name.size() + 4;
    const uint64_t padding = (64 - unpadded % 64) % 64;
    auto header = [&](std::string& to, bool central) {
      put_little_endian(to, central ? 0x02014b50 : 0x04034b50, 4);
      if (central) put_little_endian(to, 20, 2);  // version made by
      put_little_endian(to, 20, 2);               // version needed
      put_little_endian(to, 0, 2);                // flags
      put_little_endian(to, 0, 2);                // stored
      put_little_endian(to, 0, 4);                // time and date
      put_little_endian(to, crc, 4);
      put_little_endian(to, contents.size(), 4);
      put_little_endian(to, contents.size(), 4);
      put_little_endian(to, name.size(), 2);
      put_little_endian(to, central ? 0 : 4 + padding, 2);
      if (central) {
        put_little_endian(to, 0, 2);  // comment
        put_little_endian(to, 0, 2);  // disk
        put_little_endian(to, 0, 2);  // internal attributes
        put_little_endian(to, 0, 4);  // external attributes
        put_little_endian(to, local, 4);
      }
      to += name;
      if (!central) {
        put_little_endian(to, 0x4246, 2);
        put_little_endian(to, padding, 2);
        to.append(padding, 'Z');
      }
    };
    header(out, false);
    out.append(contents.data(), contents.size());
    header(directory, true);
  }
  const uint64_t directory_offset = out.size();
  TORCH_CHECK(records.size() < 0xFFFF && directory_offset + directory.size() < 0xFFFFFFFFull,
              "zip: the archive would need Zip64 (4 GiB or more), which ssn does not write");
  out += directory;
  put_little_endian(out, 0x06054b50, 4);
  put_little_endian(out, 0, 2);
  put_little_endian(out, 0, 2);
  put_little_endian(out, records.size(), 2);
  put_little_endian(out, records.size(), 2);
  put_little_endian(out, directory.size(), 4);
  put_little_endian(out, directory_offset, 4);
  put_little_endian(out, 0, 2);
  return out;
}

}  // namespace ssn::io
