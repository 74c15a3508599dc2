#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace ssn::io {

/// Writes `path` through `write(temporary_path)` and renames the result into place, so that a
/// failure or a kill never leaves a half-written file under the final name. The temporary file sits
/// in the same folder (the rename is atomic) and is removed when `write` throws, and when the
/// process gets SIGINT, SIGTERM or SIGHUP meanwhile (a handler, installed at the first write for
/// those of the three that still have their default disposition, removes the files being written
/// and ends the process by the same signal).
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path&)>& write);

/// Builds the folder `path` through `write(staging)`: a sibling folder <path>.ssn-partial-<pid>
/// that becomes `path` when `write` returns and is removed when it throws, so that a failure never
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

namespace ssn::io {

/// An exclusive lock on a folder for the lifetime of the object (flock on <folder>/.ssn.lock), so
/// that two runs never write into the same job folder. Throws, naming `what` and the folder, when
/// another process holds it.
class FolderLock {
 public:
  FolderLock(const std::filesystem::path& folder, const std::string& what);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

/// Removes what killed or crashed ssn processes left in `folder`: temporary files
/// `.ssn-tmp<pid>-<name>` and staging folders `<name>.ssn-partial-<pid>` (names nothing else uses)
/// whose process no longer runs; those of running processes, this one included, are kept. Says
/// so on stderr; returns how many were removed.
int remove_leftovers(const std::filesystem::path& folder);

/// Whether a file name is one of ssn's temporary or staging names (whatever its process), and
/// sets `pid` to that process.
bool is_leftover_name(const std::string& name, long* pid = nullptr);

}  // namespace ssn::io
