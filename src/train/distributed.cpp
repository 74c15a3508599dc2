#include "ssn/train/distributed.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>
#include <thread>

#ifdef SSN_WITH_DISTRIBUTED
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace ssn::train {
namespace {

const char* variable(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

int64_t integer_variable(const char* name, int64_t low, int64_t high) {
  const char* value = variable(name);
  TORCH_CHECK(value, "distributed launch: the environment variable ", name,
              " is not set (torchrun and `ssn train --nproc-per-node` set RANK, WORLD_SIZE, "
              "LOCAL_RANK, MASTER_ADDR and MASTER_PORT)");
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(value, &end, 10);
  TORCH_CHECK(errno == 0 && end && *end == '\0' && parsed >= low && parsed <= high,
              "distributed launch: ", name, "=", value, ": expected an integer from ", low, " to ",
              high);
  return parsed;
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv env;
  if (!variable("RANK") && !variable("WORLD_SIZE")) return env;
  env.world_size = integer_variable("WORLD_SIZE", 1, 1 << 20);
  env.rank = integer_variable("RANK", 0, env.world_size - 1);
  env.local_rank = variable("LOCAL_RANK") ? integer_variable("LOCAL_RANK", 0, 1 << 20) : env.rank;
  const char* addr = variable("MASTER_ADDR");
  TORCH_CHECK(addr,
              "distributed launch: the environment variable MASTER_ADDR is not set (the "
              "host of rank 0, e.g. 127.0.0.1)");
  env.master_addr = addr;
  env.master_port = integer_variable("MASTER_PORT", 1, 65535);
  return env;
}

#ifdef SSN_WITH_DISTRIBUTED

bool distributed_available() { return true; }

struct Communicator::State {
  int64_t rank = 0, size = 1;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

namespace {

// An exception's message without LibTorch's C++ backtrace.
std::string message_of(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error)) {
    return c10_error->what_without_backtrace();
  }
  return error.what();
}

// Runs a collective and waits; failures name this rank and what the other ranks left behind.
template <typename Start>
void run_collective(int64_t rank, int64_t size, const char* what, Start&& start) {
  try {
    c10::intrusive_ptr<c10d::Work> work = start();
    work->wait();
  } catch (const std::exception& error) {
    TORCH_CHECK(false, "rank ", rank, " of ", size, ": ", what,
                " failed: another rank stopped or cannot be reached (", message_of(error), ")");
  }
}

}  // namespace

Communicator::Communicator(const DistributedEnv& env, const std::string& backend,
                           std::chrono::milliseconds timeout)
    : state_(std::make_unique<State>()) {
  TORCH_CHECK(backend == "gloo", "--dist-backend ", backend,
              ": this build has the gloo backend only (NCCL is not built in)");
  state_->rank = env.rank;
  state_->size = env.world_size;
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(env.master_port);
  // torchrun's agent hosts the store itself and says so (as PyTorch's env:// rendezvous reads).
  const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  options.isServer = env.rank == 0 && !(agent_store && std::string(agent_store) == "True");
  options.numWorkers = static_cast<size_t>(env.world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  try {
    state_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  } catch (const std::exception& error) {
    TORCH_CHECK(false, "rank ", env.rank, " of ", env.world_size, ": rendezvous at ",
                env.master_addr, ":", env.master_port, " failed (",
                env.rank == 0 ? "is the port in use? " : "is rank 0 running? ", message_of(error),
                ")");
  }
  auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
  // This rank's own address, as PyTorch picks it: GLOO_SOCKET_IFNAME's interface when set, the
  // loopback when the run is on this machine, else this host's name.
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  const bool local = env.master_addr == "localhost" || env.master_addr.rfind("127.", 0) == 0;
  group_options->devices.push_back(
      interface && *interface ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
      : local                 ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                              : c10d::ProcessGroupGloo::createDefaultDevice());
  group_options->threads = 2;
  try {
    state_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("ssn", state_->store), static_cast<int>(env.rank),
        static_cast<int>(env.world_size), group_options);
  } catch (const std::exception& error) {
    TORCH_CHECK(false, "rank ", env.rank, " of ", env.world_size,
                ": the process group could not connect the ranks within ", timeout.count() / 1000,
                " s (are all WORLD_SIZE=", env.world_size,
                " ranks started, with the same MASTER_ADDR and MASTER_PORT?): ", message_of(error));
  }
}

Communicator::~Communicator() = default;

int64_t Communicator::rank() const { return state_->rank; }
int64_t Communicator::size() const { return state_->size; }

void Communicator::all_reduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  // Buckets of one dtype and device, each one flat tensor.
  std::vector<std::vector<at::Tensor>> buckets;
  int64_t filled = 0;
  for (const at::Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    if (buckets.empty() || filled + bytes > bucket_bytes ||
        buckets.back().front().scalar_type() != t.scalar_type() ||
        buckets.back().front().device() != t.device()) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(t);
    filled += bytes;
  }
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& bucket : buckets) {
      std::vector<at::Tensor> views;
      for (const at::Tensor& t : bucket) views.push_back(t.reshape({-1}));
      std::vector<at::Tensor> flat = {at::cat(views)};
      flats.push_back(flat.front());
      works.push_back(state_->group->allreduce(flat));
    }
    for (auto& work : works) work->wait();
  } catch (const std::exception& error) {
    TORCH_CHECK(false, "rank ", state_->rank, " of ", state_->size,
                ": the gradient all-reduce failed: another rank stopped or cannot be reached (",
                message_of(error), ")");
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t offset = 0;
    for (at::Tensor& t : buckets[b]) {
      t.copy_(flats[b].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
}

void Communicator::broadcast(const std::vector<at::Tensor>& tensors, int64_t root) {
  for (const at::Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    std::vector<at::Tensor> one = {t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    run_collective(state_->rank, state_->size, "a broadcast from rank 0",
                   [&] { return state_->group->broadcast(one, options); });
    if (!one.front().is_same(t)) t.copy_(one.front());
  }
}

void Communicator::barrier() {
  run_collective(state_->rank, state_->size, "a barrier", [&] { return state_->group->barrier(); });
}

#else  // no c10d in this build

bool distributed_available() { return false; }

struct Communicator::State {};

Communicator::Communicator(const DistributedEnv&, const std::string&, std::chrono::milliseconds) {
  TORCH_CHECK(false,
              "this ssn was built without torch.distributed (SSN_WITH_DISTRIBUTED=OFF: no "
              "Gloo headers); it trains in one process only");
}
Communicator::~Communicator() = default;
int64_t Communicator::rank() const { return 0; }
int64_t Communicator::size() const { return 1; }
void Communicator::all_reduce_sum(const std::vector<at::Tensor>&, int64_t) {}
void Communicator::broadcast(const std::vector<at::Tensor>&, int64_t) {}
void Communicator::barrier() {}

#endif

}  // namespace ssn::train
