#include "launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "ssn/runtime/threads.h"

namespace ssn::cli {
namespace {

volatile sig_atomic_t g_stop_signal = 0;

void remember_signal(int signal) { g_stop_signal = signal; }

// A port nobody listens on now (the kernel's choice); rank 0's store binds it right after.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("--nproc-per-node: cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("--nproc-per-node: cannot find a free port on 127.0.0.1");
  return ntohs(address.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped";
}

}  // namespace

std::vector<std::string> own_arguments() {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::string> arguments;
  std::string current;
  for (char c : bytes) {
    if (c == '\0') {
      arguments.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!arguments.empty()) arguments.erase(arguments.begin());
  return arguments;
}

int launch_local_workers(int nproc, int port, const std::vector<std::string>& arguments) {
  if (port == 0) port = free_port();
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> workers;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t w : workers) ::kill(w, SIGTERM);
      throw std::runtime_error("--nproc-per-node: cannot start worker " + std::to_string(rank) +
                               ": " + std::strerror(errno));
    }
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      static const char kName[] = "ssn";
      argv.push_back(const_cast<char*>(kName));
      for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "ssn: error: worker %d: cannot start: %s\n", rank, std::strerror(errno));
      ::_exit(127);
    }
    workers.push_back(pid);
  }
  std::vector<bool> running(workers.size(), true);
  int remaining = nproc;
  int result = 0;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  const auto stop_all = [&](int signal) {
    for (size_t r = 0; r < workers.size(); ++r) {
      if (running[r]) ::kill(workers[r], signal);
    }
  };
  while (remaining > 0) {
    if (g_stop_signal && !stopping) {
      std::fprintf(stderr, "ssn: stopping the %d workers (signal %d)\n", remaining,
                   static_cast<int>(g_stop_signal));
      stopping = true;
      result = 1;
      stop_all(SIGTERM);
      stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      stop_all(SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    for (size_t r = 0; r < workers.size(); ++r) {
      if (workers[r] != pid || !running[r]) continue;
      running[r] = false;
      --remaining;
      const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && !stopping) {
        std::fprintf(stderr, "ssn: error: rank %zu of %d (pid %d) %s; stopping the other workers\n",
                     r, nproc, static_cast<int>(pid), describe(status).c_str());
        stopping = true;
        stop_all(SIGTERM);
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      }
      if (failed) result = 1;
    }
  }
  return result;
}

void launch_if_requested(int nproc, int master_port) {
  if (nproc <= 1) return;
  if (std::getenv("WORLD_SIZE")) {
    throw CLI::ValidationError("--nproc-per-node",
                               "this process is already a worker of a distributed launch "
                               "(WORLD_SIZE is set)");
  }
  std::vector<std::string> arguments;
  bool threads = false;
  const std::vector<std::string> own = own_arguments();
  for (size_t i = 0; i < own.size(); ++i) {
    const std::string& a = own[i];
    if (a == "--nproc-per-node" || a == "--master-port") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc-per-node=", 0) == 0 || a.rfind("--master-port=", 0) == 0) continue;
    if (a == "--threads" || a.rfind("--threads=", 0) == 0) threads = true;
    arguments.push_back(a);
  }
  if (!threads) {
    const int each = std::max(1, runtime::available_cores() / nproc);
    arguments.insert(arguments.begin(), {"--threads", std::to_string(each)});
  }
  std::fflush(stdout);
  std::exit(launch_local_workers(nproc, master_port, arguments));
}

std::shared_ptr<train::Communicator> communicator_from_environment(const std::string& backend,
                                                                   int64_t timeout_seconds,
                                                                   std::string& device) {
  const train::DistributedEnv env = train::distributed_env_from_environment();
  if (!env.distributed()) return nullptr;
  if (device.rfind("cuda", 0) == 0 && device.find(':') == std::string::npos) {
    device = "cuda:" + std::to_string(env.local_rank);
  }
  return std::make_shared<train::Communicator>(env, backend, std::chrono::seconds(timeout_seconds));
}

}  // namespace ssn::cli
