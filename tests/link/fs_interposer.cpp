// A shared library that exports its own std::filesystem::remove_all, as the pip wheels of PyTorch
// (2.4 on) export copies of libstdc++'s std::filesystem functions (pytorch/pytorch#133437). It
// removes nothing and returns a value the real one never returns for an existing empty folder.

#include <cstdint>
#include <filesystem>

namespace std::filesystem {
std::uintmax_t remove_all(const path&) { return 4242; }
}  // namespace std::filesystem

// Something the executable needs from this library besides remove_all, as it needs LibTorch for
// more than std::filesystem: the library stays among its needed ones with --as-needed.
extern "C" int ssn_fs_interposer_loaded() { return 1; }
