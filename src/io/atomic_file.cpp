#include "ssn/io/atomic_file.h"

#include <c10/util/Exception.h>
#include <unistd.h>

#include <fstream>
#include <system_error>

namespace ssn::io {

void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path&)>& write) {
  namespace fs = std::filesystem;
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  TORCH_CHECK(fs::is_directory(folder), "cannot write ", path.string(), ": folder ",
              folder.string(), " does not exist");
  // A prefix keeps every extension (".nii.gz" too): image writers choose the format by it.
  const fs::path temporary =
      folder / (".tmp" + std::to_string(::getpid()) + "-" + path.filename().string());
  try {
    write(temporary);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    TORCH_CHECK(false, "cannot write ", path.string(), ": ", error.message());
  }
}

void write_text_file(const std::filesystem::path& path, const std::string& contents) {
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    std::ofstream out(temporary, std::ios::binary);
    out << contents;
    out.close();
    TORCH_CHECK(out.good(), "cannot write ", path.string(), ": the write failed (disk full?)");
  });
}

}  // namespace ssn::io
