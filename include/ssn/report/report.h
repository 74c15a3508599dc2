#pragma once

// `ssn report`: one self-contained HTML page per set of job folders (learning curves, metrics,
// pictures of samples), readable in any browser without a server or network.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ssn::report {

struct ReportOptions {
  /// Job folders (docs/file-formats.md): train_log.csv, config.json, and when present
  /// predictions/ (from `ssn predict`) and evaluation/summary.json (from `ssn evaluate`).
  std::vector<std::filesystem::path> job_dirs;
  /// The HTML file; default <first job dir>/report.html.
  std::filesystem::path out;
  /// Test cases shown per job as a montage.
  int64_t num_cases = 3;
  /// Samples shown per case.
  int64_t num_samples = 6;
  /// Samples behind the pixel-wise entropy map.
  int64_t entropy_samples = 100;
  uint64_t seed = 0;
  /// Ignore the predictions folders' calibration.json (samples at temperature 1).
  bool no_calibration = false;
};

/// Writes the report atomically and returns its path. A job folder must exist and hold at least
/// one of train_log.csv, predictions/prediction.csv, evaluation/summary.json; a missing part is
/// named in the page. Pictures are PNGs inside the page (data: URIs), curves inline SVG.
std::filesystem::path write_report(const ReportOptions& options);

}  // namespace ssn::report
