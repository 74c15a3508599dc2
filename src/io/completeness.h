#pragma once

// Whether an image file holds every byte its header promises. ITK's readers fill what a damaged
// or truncated file lacks with zeros (a .nii.gz cut in half reads "fine"), and its writers do not
// report a short write on a full disk, so ssn checks each file it reads and each file it writes.

#include <cstdint>
#include <filesystem>

namespace ssn::io::detail {

/// Throws a c10::Error naming `path` unless the file (and, for MetaImage and NRRD, its detached
/// data file) holds `data_bytes` bytes of pixel data after its header: the file size for
/// uncompressed data; for gzip or zlib streams (.nii.gz, compressed MetaImage, gzip NRRD), a full
/// decompression that must end cleanly (zlib's checksums included) and yield the bytes; for PNG,
/// the final IEND chunk. Formats whose size cannot be known (NRRD text encodings) pass.
void check_complete(const std::filesystem::path& path, uint64_t data_bytes);

}  // namespace ssn::io::detail
