#pragma once

// PyTorch checkpoints in and out of ssn (`ssn import-checkpoint`, `ssn export-checkpoint`).
// Names: ssn's model calls its tensors backbone.<...> and head.<mean_l|log_cov_diag_l|
// cov_factor_l>.<weight|bias> (logits_l.<...> for a deterministic model). The reference's
// StochasticDeepMedic calls the same tensors by the backbone's own names and mean_l /
// log_cov_diag_l / cov_factor_l, without the prefixes. Files in either naming import; a low-rank
// DeepMedic with the factor's bias (as the reference's) exports in the reference's naming (it
// loads into StochasticDeepMedic), every other model in ssn's.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ssn/config/config.h"
#include "ssn/io/torch_file.h"

namespace ssn::train {

enum class PytorchNaming { kSsn, kReference };

/// ssn's name of a tensor -> the reference's (the prefix backbone. or head. removed).
std::string reference_name(const std::string& ssn_name);

struct ImportSummary {
  size_t tensors = 0;
  /// The checkpoint's entry that held the state_dict ("" for a bare one).
  std::string entry;
  PytorchNaming naming = PytorchNaming::kSsn;
};

/// Reads the torch.save file `pytorch`, maps its tensors onto the model that `config` describes
/// (every name and shape checked: an error names the first missing, unexpected or mis-shaped
/// tensor) and writes an ssn checkpoint to `out` atomically: the weights, a fresh optimiser and
/// epoch 0, its generators seeded as `ssn train --random-seeds seed` seeds them, so that predict
/// and train --resume take it.
ImportSummary import_pytorch_checkpoint(const std::filesystem::path& pytorch,
                                        const config::Config& config,
                                        const std::filesystem::path& out, uint64_t seed);

struct ExportSummary {
  size_t tensors = 0;
  PytorchNaming naming = PytorchNaming::kSsn;
};

/// Writes the weights of the ssn checkpoint `checkpoint` as a torch.save state_dict (an
/// OrderedDict of tensors), atomically; see the naming rule above.
ExportSummary export_pytorch_checkpoint(const std::filesystem::path& checkpoint,
                                        const std::filesystem::path& out);

}  // namespace ssn::train
