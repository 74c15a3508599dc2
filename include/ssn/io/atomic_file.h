#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace ssn::io {

/// Writes `path` through `write(temporary_path)` and renames the result into place, so that a
/// failure or a kill never leaves a half-written file under the final name. The temporary file sits
/// in the same folder (the rename is atomic) and is removed when `write` throws.
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path&)>& write);

/// write_atomically for text.
void write_text_file(const std::filesystem::path& path, const std::string& contents);

}  // namespace ssn::io
