#pragma once

// PyTorch's torch.save files, read and written without Python and without running anything in
// them (io/pickle.h): the zip format (<name>/data.pkl + <name>/data/<key> storages, PyTorch 1.6
// and later) and the legacy format before it. docs/file-formats.md describes both.

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

namespace ssn::io {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

/// The tensors of a torch.save file, in the file's order: a state_dict (a dict or OrderedDict of
/// name -> tensor), or a training checkpoint (a dict) whose 'state_dict' or 'model' entry is one
/// (`entry`, when given, receives which: "" for a bare state_dict). Tensors come out contiguous
/// on the CPU in their stored type. Errors name the file and what was found instead: not a
/// torch.save file, a damaged record (CRC-32), a global it refuses, a storage shorter than a
/// tensor that views it.
std::vector<NamedTensor> read_torch_state_dict(const std::filesystem::path& path,
                                               std::string* entry = nullptr);

/// Writes `tensors` as torch.save(OrderedDict) does, in the zip format, atomically: Python's
/// torch.load (weights_only too) reads it back as an OrderedDict of the same tensors, bit for bit.
void write_torch_state_dict(const std::filesystem::path& path,
                            const std::vector<NamedTensor>& tensors);

}  // namespace ssn::io
