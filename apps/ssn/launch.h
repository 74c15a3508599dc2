#pragma once

// `ssn train --nproc-per-node N`: starts N workers of this same command on this machine with the
// launch variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1,
// MASTER_PORT), waits for them, and stops the others as soon as one fails, naming it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ssn/train/distributed.h"

namespace ssn::cli {

/// This process's command line (from /proc/self/cmdline), without argv[0].
std::vector<std::string> own_arguments();

/// Runs `arguments` (this executable's, without the launcher flags) as `nproc` workers; port 0
/// picks a free one. Returns the exit status for the whole run: 0 when every worker succeeded.
int launch_local_workers(int nproc, int port, const std::vector<std::string>& arguments);

/// For a command with --nproc-per-node: when nproc > 1, runs this command line as nproc workers
/// (without --nproc-per-node and --master-port; with --threads cores / nproc unless given) and
/// exits with their status. Refused inside a worker (WORLD_SIZE set). Otherwise returns.
void launch_if_requested(int nproc, int master_port);

/// The process group of a distributed launch (RANK / WORLD_SIZE set), else null. A device "cuda"
/// becomes cuda:LOCAL_RANK.
std::shared_ptr<train::Communicator> communicator_from_environment(const std::string& backend,
                                                                   int64_t timeout_seconds,
                                                                   std::string& device);

}  // namespace ssn::cli
