#pragma once

// Plain CSV tables (comma-separated, a header line, no quoting) as the reference's index files.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace ssn::io {

struct CsvTable {
  std::filesystem::path path;
  std::vector<std::string> header;
  std::map<std::string, size_t> column;  ///< name -> index in header
  std::vector<std::vector<std::string>> rows;
  std::vector<int> line_numbers;  ///< of each row in the file (1-based; the header is line 1)

  /// The field of `row` in column `name`; the column must exist.
  const std::string& field(size_t row, const std::string& name) const;
};

/// Reads a CSV file; errors name the file and line: missing or empty file, a quoted field, a row
/// with another number of fields than the header. Blank lines are skipped; CRLF is accepted.
CsvTable read_csv(const std::filesystem::path& path);

/// Splits a line at `separator` (a trailing separator gives a last empty field).
std::vector<std::string> split_fields(const std::string& line, char separator);

}  // namespace ssn::io
