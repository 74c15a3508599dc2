#include "ssn/io/atomic_file.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <system_error>

namespace ssn::io {
namespace {

// The temporary files being written, for the handler of SIGINT, SIGTERM and SIGHUP: fixed slots
// that the handler reads with lock-free atomics and empties with unlink, both async-signal-safe.
// A slot is 0 (free), 1 (being filled) or 2 (holds a path).
constexpr int kSlots = 32;
constexpr size_t kPathBytes = 4096;
struct TemporarySlot {
  std::atomic<int> state{0};
  char path[kPathBytes];
};
TemporarySlot g_temporaries[kSlots];

extern "C" void remove_temporaries_and_die(int signal) {
  for (TemporarySlot& slot : g_temporaries) {
    if (slot.state.load(std::memory_order_acquire) == 2) ::unlink(slot.path);
  }
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

// Installs the handler once, for the signals whose disposition is still the default one (a
// caller's own handler stays).
void install_handler_once() {
  static const bool installed = [] {
    for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction current {};
      if (::sigaction(signal, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
      struct sigaction action {};
      action.sa_handler = remove_temporaries_and_die;
      sigemptyset(&action.sa_mask);
      ::sigaction(signal, &action, nullptr);
    }
    return true;
  }();
  (void)installed;
}

// Registers `path` for the handler while it is being written; without a free slot (32 writes at
// once) it is not registered, and the next ssn command in its folder removes it (remove_leftovers).
class RegisteredTemporary {
 public:
  explicit RegisteredTemporary(const std::string& path) {
    install_handler_once();
    if (path.size() >= kPathBytes) return;
    for (TemporarySlot& s : g_temporaries) {
      int expected = 0;
      if (s.state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        std::memcpy(s.path, path.c_str(), path.size() + 1);
        s.state.store(2, std::memory_order_release);
        slot_ = &s;
        return;
      }
    }
  }
  ~RegisteredTemporary() {
    if (slot_ != nullptr) slot_->state.store(0, std::memory_order_release);
  }
  RegisteredTemporary(const RegisteredTemporary&) = delete;
  RegisteredTemporary& operator=(const RegisteredTemporary&) = delete;

 private:
  TemporarySlot* slot_ = nullptr;
};

}  // namespace

void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path&)>& write) {
  namespace fs = std::filesystem;
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  TORCH_CHECK(fs::is_directory(folder), "cannot write ", path.string(), ": folder ",
              folder.string(), " does not exist");
  // A prefix keeps every extension (".nii.gz" too): image writers choose the format by it.
  const fs::path temporary =
      folder / (".ssn-tmp" + std::to_string(::getpid()) + "-" + path.filename().string());
  // Until it is renamed or removed, a SIGINT, SIGTERM or SIGHUP removes it before the process ends.
  const RegisteredTemporary registered(temporary.string());
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

void write_folder_atomically(const std::filesystem::path& given, const std::string& what,
                             const std::function<void(const std::filesystem::path&)>& write) {
  namespace fs = std::filesystem;
  // "out/" names the folder "out": its staging folder must be a sibling, not a child.
  fs::path path = given.lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  TORCH_CHECK(!path.empty() && path.filename() != "." && path.filename() != "..", what, " ",
              given.string(), ": expected a folder name");
  TORCH_CHECK(!fs::exists(path) || (fs::is_directory(path) && fs::is_empty(path)), what, " ",
              path.string(), " already exists and is not an empty folder");
  remove_leftovers(path.has_parent_path() ? path.parent_path() : fs::path("."));
  const fs::path staging = path.parent_path() / (path.filename().string() + ".ssn-partial-" +
                                                 std::to_string(::getpid()));
  fs::remove_all(staging);
  try {
    fs::create_directories(staging);
    write(staging);
    if (fs::exists(path)) fs::remove(path);  // an empty folder, checked above
    fs::rename(staging, path);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
}

void write_text_file(const std::filesystem::path& path, const std::string& contents) {
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    // POSIX calls, each checked, so that the error says what happened (no space, no permission)
    // and a short write is never taken for a whole file.
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TORCH_CHECK(fd >= 0, "cannot write ", path.string(), ": ", std::strerror(errno));
    const char* data = contents.data();
    size_t left = contents.size();
    while (left > 0) {
      const ssize_t written = ::write(fd, data, left);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) {
        const int error = written < 0 ? errno : ENOSPC;
        ::close(fd);
        TORCH_CHECK(false, "cannot write ", path.string(), ": ", std::strerror(error));
      }
      data += written;
      left -= static_cast<size_t>(written);
    }
    if (::fsync(fd) != 0 && errno != EINVAL) {
      const int error = errno;
      ::close(fd);
      TORCH_CHECK(false, "cannot write ", path.string(), ": ", std::strerror(error));
    }
    TORCH_CHECK(::close(fd) == 0, "cannot write ", path.string(), ": ", std::strerror(errno));
  });
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot read ", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  TORCH_CHECK(!in.bad(), "cannot read ", path.string(), ": the read failed");
  return text.str();
}

FolderLock::FolderLock(const std::filesystem::path& folder, const std::string& what) {
  const std::filesystem::path file = folder / ".ssn.lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  TORCH_CHECK(fd_ >= 0, "cannot lock ", what, " ", folder.string(), ": ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    TORCH_CHECK(error != EWOULDBLOCK, what, " ", folder.string(),
                " is in use by another ssn process (", file.string(),
                " is locked): wait for it to finish or use another folder");
    TORCH_CHECK(false, "cannot lock ", what, " ", folder.string(), ": ", std::strerror(error));
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

bool is_leftover_name(const std::string& name, long* pid) {
  static const std::regex temporary(R"(^\.ssn-tmp([0-9]{1,9})-.+)");
  static const std::regex staging(R"(^.+\.ssn-partial-([0-9]{1,9})$)");
  std::smatch match;
  if (!std::regex_match(name, match, temporary) && !std::regex_match(name, match, staging)) {
    return false;
  }
  if (pid != nullptr) *pid = std::stol(match[1].str());
  return true;
}

int remove_leftovers(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(folder, error)) return 0;
  std::vector<std::pair<fs::path, long>> found;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    long pid = 0;
    if (is_leftover_name(entry.path().filename().string(), &pid)) {
      found.emplace_back(entry.path(), pid);
    }
  }
  int removed = 0;
  for (const auto& [path, pid] : found) {
    // A process that still runs may still be writing; only the dead's leftovers go.
    if (pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    fs::remove_all(path, ignored);
    if (!fs::exists(path)) {
      std::fprintf(stderr, "ssn: removed %s, left by process %ld, which no longer runs\n",
                   path.c_str(), pid);
      ++removed;
    }
  }
  return removed;
}

}  // namespace ssn::io
