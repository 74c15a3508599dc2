#pragma once

// Zip archives, as LibTorch and PyTorch write checkpoints: a reader that checks every record it
// returns (LibTorch's own reader does not check CRC-32s, so a flipped bit would load as other
// weights) and a writer of stored (uncompressed) records.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ssn::io {

/// Reads the central directory of the zip archive `path` and checks every record: its local
/// header, its size and its CRC-32 (stored and deflated records; Zip64 sizes and offsets).
/// Throws a c10::Error naming the file and the record when anything does not match.
void check_zip_integrity(const std::filesystem::path& path);

/// One record of a zip archive's central directory.
struct ZipRecord {
  std::string name;
  int method = 0;  ///< 0 stored, 8 deflated; others are refused when read
  uint32_t crc = 0;
  uint64_t compressed = 0;
  uint64_t uncompressed = 0;
  uint64_t local_header = 0;
};

/// A zip archive opened for reading. Errors name the file (and the record).
class ZipReader {
 public:
  explicit ZipReader(const std::filesystem::path& path);
  const std::vector<ZipRecord>& records() const { return records_; }
  /// The record called `name`, or nullptr.
  const ZipRecord* find(const std::string& name) const;
  /// The record's bytes, inflated when deflated; the size and the CRC-32 are checked.
  std::string read(const ZipRecord& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::vector<unsigned char> read_at(uint64_t offset, uint64_t count);
  uint64_t data_offset(const ZipRecord& record);

  std::filesystem::path path_;
  std::ifstream in_;
  uint64_t size_ = 0;
  std::vector<ZipRecord> records_;
};

/// The bytes of a zip archive holding `records` (name, contents) stored uncompressed, each record's
/// data aligned to 64 bytes in the file (as PyTorch writes them, so that readers may map them).
/// Throws when the archive would need Zip64 (4 GiB or more).
std::string zip_stored(const std::vector<std::pair<std::string, std::string_view>>& records);

}  // namespace ssn::io
