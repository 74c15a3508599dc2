#pragma once

// `ssn convert-lidc`: the two LIDC files most researchers hold, into the LIDC crops layout that
// ssn train / predict --data-dir read (data/lidc.h):
//   - data_lidc.pickle (the Probabilistic U-Net PyTorch port's file): a dict slice name ->
//     {'image': float32 [H, W] in [0, 1], 'masks': [A arrays uint8 [H, W] of 0/1], 'series_uid':
//     str, ...}, with no split: split here by series_uid (seeded), so no patient is in two splits.
//   - data_lidc.hdf5 (PHiSeg's preprocessing, used by the SSN paper): groups train, val, test with
//     images float64 [N, H, W], labels uint8 [N, H, W, A] and uids int64 [N]; its split is kept.
// Masks are written exactly (0/255 PNG); images as 16-bit grey PNG through one linear map for the
// whole file (stored in lidc_conversion.json: source = offset + scale * png).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

namespace ssn::data {

struct ConvertLidcOptions {
  /// Seeds the patient split of a pickle (an HDF5 file keeps its own).
  uint64_t seed = 0;
  /// Called after every slice written.
  std::function<void(int64_t done, int64_t total)> progress;
};

struct ConvertLidcSummary {
  std::string format;                       ///< "pickle" or "hdf5"
  std::map<std::string, int64_t> slices;    ///< per split (train, val, test)
  std::map<std::string, int64_t> patients;  ///< per split
  int64_t annotators = 0;
  /// Patients with slices in more than one split (possible only in an HDF5 file, whose split is
  /// kept as it is).
  int64_t patients_in_two_splits = 0;
  /// The images' map: source value = offset + scale * PNG value.
  double scale = 1, offset = 0;
};

/// Converts `input` (pickle or HDF5, told apart by their first bytes) into the folder `out`
/// (which must not exist or be empty), atomically. Errors name the file and the slice or dataset:
/// a foreign or damaged file, a global the pickle reader refuses, masks other than 0/1, shapes that
/// differ, non-finite images.
ConvertLidcSummary convert_lidc(const std::filesystem::path& input,
                                const std::filesystem::path& out,
                                const ConvertLidcOptions& options = {});

}  // namespace ssn::data
