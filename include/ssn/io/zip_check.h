#pragma once

// Integrity of zip archives (LibTorch checkpoints are zip files): LibTorch's reader does not check
// the CRC-32 of the records it loads, so a flipped bit in a checkpoint would load as other weights.

#include <filesystem>

namespace ssn::io {

/// Reads the central directory of the zip archive `path` and checks every record: its local
/// header, its size and its CRC-32 (stored and deflated records; Zip64 sizes and offsets).
/// Throws a c10::Error naming the file and the record when anything does not match.
void check_zip_integrity(const std::filesystem::path& path);

}  // namespace ssn::io
