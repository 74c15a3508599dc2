#pragma once

// `ssn train --nproc-per-node N`: starts N workers of this same command on this machine with the
// launch variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1,
// MASTER_PORT), waits for them, and stops the others as soon as one fails, naming it.

#include <string>
#include <vector>

namespace ssn::cli {

/// This process's command line (from /proc/self/cmdline), without argv[0].
std::vector<std::string> own_arguments();

/// Runs `arguments` (this executable's, without the launcher flags) as `nproc` workers; port 0
/// picks a free one. Returns the exit status for the whole run: 0 when every worker succeeded.
int launch_local_workers(int nproc, int port, const std::vector<std::string>& arguments);

}  // namespace ssn::cli
