#pragma once

// Data-parallel training on torch.distributed's engine (c10d): a TCPStore rendezvous at
// MASTER_ADDR:MASTER_PORT (hosted by rank 0) and a Gloo process group for the collectives. The
// launch variables are torchrun's and a Slurm script's: RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT. docs/distributed.md says what is synchronised and what it costs.

#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace ssn::train {

struct DistributedEnv {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr;
  int64_t master_port = 0;
  bool distributed() const { return world_size > 1; }
};

/// The launch variables of this process. None of RANK and WORLD_SIZE set: one process (rank 0 of
/// 1). Otherwise RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are required (LOCAL_RANK defaults
/// to RANK); a missing or malformed one is an error naming it.
DistributedEnv distributed_env_from_environment();

/// Whether this build has the collectives (LibTorch's Gloo process group and its headers).
bool distributed_available();

/// The process group of one training run. Every collective is called by every rank in the same
/// order; an error (a peer that died, a timeout) throws a c10::Error naming this rank and, where
/// the rendezvous can still tell, the rank that stopped.
class Communicator {
 public:
  /// Rendezvous with the other ranks (rank 0 hosts the store; the others wait for it up to
  /// `timeout`), then the process group. backend: "gloo" (CPU and CUDA tensors).
  Communicator(const DistributedEnv& env, const std::string& backend,
               std::chrono::milliseconds timeout);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int64_t rank() const;
  int64_t size() const;
  /// Sums `tensors` over the ranks, in place: flattened into buckets of about `bucket_bytes`,
  /// whose reductions run concurrently on the process group's threads.
  void all_reduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  /// Copies rank `root`'s `tensors` into every rank's, in place.
  void broadcast(const std::vector<at::Tensor>& tensors, int64_t root = 0);
  void barrier();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ssn::train
