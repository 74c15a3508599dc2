// Links against fs_interposer, which exports its own std::filesystem::remove_all, after ssn's
// link options: the call must reach libstdc++'s, which removes the folder and returns 1. Exit 0
// when it does; otherwise it names what happened (exit 1).

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

extern "C" int ssn_fs_interposer_loaded();

int main() {
  namespace fs = std::filesystem;
  const fs::path folder =
      fs::temp_directory_path() / ("ssn_link_order_" + std::to_string(::getpid()));
  fs::create_directory(folder);
  const std::uintmax_t removed = fs::remove_all(folder);
  const bool gone = !fs::exists(folder);
  if (ssn_fs_interposer_loaded() == 1 && removed == 1 && gone) return 0;
  std::fprintf(stderr,
               "std::filesystem::remove_all returned %ju and the folder %s: the copy exported by a "
               "library linked before libstdc++ was called\n",
               removed, gone ? "is gone" : "is still there");
  std::error_code ignored;
  fs::remove(folder, ignored);
  return 1;
}
