#include "ssn/train/train_log.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "ssn/io/atomic_file.h"

namespace ssn::train {
namespace {

constexpr const char* kHeader = "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds,best";
// Logs and checkpoints written before the `best` column.
constexpr const char* kHeaderWithoutBest = "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds";

}  // namespace

std::string format_train_log(const std::vector<EpochRecord>& records) {
  std::ostringstream out;
  out << std::setprecision(10) << kHeader << "\n";
  for (const auto& r : records) {
    out << r.epoch << "," << r.train_loss << "," << r.val_loss << "," << r.val_ged << "," << r.lr
        << "," << r.bad_steps << "," << r.seconds << "," << (r.best ? 1 : 0) << "\n";
  }
  return out.str();
}

std::vector<EpochRecord> parse_train_log(const std::string& csv, const std::string& source) {
  std::vector<EpochRecord> records;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  TORCH_CHECK(line == kHeader || line == kHeaderWithoutBest, source, ": expected the header ",
              kHeader, ", got '", line, "'");
  const size_t fields = line == kHeader ? 8 : 7;
  for (int line_number = 2; std::getline(in, line); ++line_number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    // strtod, unlike operator>>, reads the "nan" of epochs without validation.
    std::vector<double> values;
    const char* cursor = line.c_str();
    for (;;) {
      char* end = nullptr;
      values.push_back(std::strtod(cursor, &end));
      TORCH_CHECK(end != cursor && (*end == ',' || *end == '\0'), source, " line ", line_number,
                  ": expected ", fields, " numbers separated by commas, got '", line, "'");
      if (*end == '\0') break;
      cursor = end + 1;
    }
    TORCH_CHECK(values.size() == fields, source, " line ", line_number, ": expected ", fields,
                " fields, got ", values.size());
    EpochRecord r;
    r.epoch = static_cast<int64_t>(values[0]);
    r.train_loss = values[1];
    r.val_loss = values[2];
    r.val_ged = values[3];
    r.lr = values[4];
    r.bad_steps = static_cast<int64_t>(values[5]);
    r.seconds = values[6];
    r.best = fields == 8 && values[7] != 0;
    records.push_back(r);
  }
  return records;
}

void write_train_log(const std::filesystem::path& path, const std::vector<EpochRecord>& records) {
  io::write_text_file(path, format_train_log(records));
}

std::vector<EpochRecord> read_train_log(const std::filesystem::path& path) {
  return parse_train_log(io::read_text_file(path), path.string());
}

}  // namespace ssn::train
