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

/// Builds the folder `path` through `write(staging)`: a sibling folder <path>.partial-<pid> that
/// becomes `path` when `write` returns and is removed when it throws, so that a failure never
/// leaves a half-written folder under the final name. `path` must not exist or be an empty folder;
/// `what` names it in that error (e.g. "--out").
void write_folder_atomically(const std::filesystem::path& path, const std::string& what,
                             const std::function<void(const std::filesystem::path&)>& write);

/// write_atomically for text or any bytes: every write, the flush to disk and the close are
/// checked, and an error names the file and the system's reason (no space left, permission).
void write_text_file(const std::filesystem::path& path, const std::string& contents);

/// The whole contents of a file; errors name the file.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ssn::io
