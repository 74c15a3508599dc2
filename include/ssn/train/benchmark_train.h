#pragma once

// `ssn benchmark train`: the speed and memory of training steps of a config's model and loss on
// random inputs of the config's shapes.

#include <nlohmann/json.hpp>
#include <string>

#include "ssn/config/config.h"

namespace ssn::train {

/// Builds the config's model, optimiser and loss on `device`, makes one random batch of the
/// config's shapes (LIDC layout: training.batch_size images of data.size; volumes: patches of
/// training.input_patch_size, their output size and an all-ones mask), runs `warmup` steps, then
/// times `steps` steps (forward, loss, backward, optimiser step; the device synchronised before
/// each clock reading). Returns {"model", "device", "batch_size", "input_shape", "threads",
/// "steps", "seconds_per_step" (median), "seconds" (each step), "examples_per_second",
/// "peak_tensor_bytes" (CPU: the tracker over the timed steps; CUDA: null, not measured yet),
/// "loss" (the last)}. With `phases`, the device is also synchronised after the forward pass, the
/// loss, the backward pass and the optimiser step, and "phase_seconds" holds each one's median
/// ({"forward", "loss", "backward", "optimizer"}; the syncs make the step itself a little slower
/// on a GPU).
nlohmann::json benchmark_train(const config::Config& config, const std::string& device,
                               int64_t steps, int64_t warmup, uint64_t seed, bool phases = false);

}  // namespace ssn::train
