#include "ssn/io/csv.h"

#include <c10/util/Exception.h>

#include <fstream>
#include <sstream>

namespace ssn::io {

std::vector<std::string> split_fields(const std::string& line, char separator) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, separator)) fields.push_back(field);
  if (!line.empty() && line.back() == separator) fields.emplace_back();
  return fields;
}

const std::string& CsvTable::field(size_t row, const std::string& name) const {
  return rows.at(row).at(column.at(name));
}

CsvTable read_csv(const std::filesystem::path& path) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), "cannot read ", path.string(),
              ": no such file");
  std::ifstream in(path);
  TORCH_CHECK(in.good(), "cannot read ", path.string());
  CsvTable table;
  table.path = path;
  std::string line;
  TORCH_CHECK(std::getline(in, line), path.string(), " is empty, expected a header line");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte-order mark
  table.header = split_fields(line, ',');
  for (size_t i = 0; i < table.header.size(); ++i) {
    TORCH_CHECK(table.column.emplace(table.header[i], i).second, path.string(),
                ": the header names column '", table.header[i], "' twice");
  }
  for (int number = 2; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    TORCH_CHECK(line.find('"') == std::string::npos, path.string(), " line ", number,
                ": quoted fields are not supported");
    std::vector<std::string> fields = split_fields(line, ',');
    TORCH_CHECK(fields.size() == table.header.size(), path.string(), " line ", number, ": ",
                fields.size(), " fields, the header has ", table.header.size());
    table.rows.push_back(std::move(fields));
    table.line_numbers.push_back(number);
  }
  return table;
}

}  // namespace ssn::io
