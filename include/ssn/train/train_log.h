#pragma once

// The train log: one record per epoch, kept in the checkpoint (for --resume) and written as
// JOB/train_log.csv (read by `ssn report`). Format in docs/file-formats.md.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ssn::train {

struct EpochRecord {
  int64_t epoch = 0;  ///< 1-based: the number of epochs done
  double train_loss = 0.0;
  double val_loss = 0.0;  ///< NaN in epochs without validation
  double val_ged = 0.0;   ///< NaN in epochs without validation
  double lr = 0.0;
  int64_t bad_steps = 0;  ///< steps skipped for a non-finite loss
  double seconds = 0.0;
  /// This epoch's checkpoint became checkpoint_best.pt (valid.best_criterion, lowest among the
  /// validated epochs after the mean-only warm-up).
  bool best = false;
};

/// The CSV text: the header `epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds,best`, then
/// one line per record (NaN as "nan", best 0 or 1).
std::string format_train_log(const std::vector<EpochRecord>& records);

/// Parses the text of a train log (also the 7-column logs before `best`); errors name `source` and
/// the line.
std::vector<EpochRecord> parse_train_log(const std::string& csv, const std::string& source);

/// Writes format_train_log(records) to `path` atomically.
void write_train_log(const std::filesystem::path& path, const std::vector<EpochRecord>& records);

/// Reads and parses a train_log.csv; errors name the file.
std::vector<EpochRecord> read_train_log(const std::filesystem::path& path);

}  // namespace ssn::train
