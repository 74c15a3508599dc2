#pragma once

// `ssn model`: the network a config builds, layer by layer, as Keras' summary() or torchinfo
// show it: each layer's output shape for the config's input size and its parameters.

#include <nlohmann/json.hpp>

#include "ssn/config/config.h"

namespace ssn::train {

/// Builds the config's model on the CPU, runs one forward pass of zeros of the config's input
/// shape (LIDC layout: [1, I, data.size, data.size]; volumes: training.input_patch_size, or the
/// smallest patch the network takes) and returns
///   {"model", "input_shape", "parameters" (learnable values), "trainable_parameters",
///    "buffers" (batch norm's running statistics and counters: not learnt),
///    "layers": [{"name", "type", "output_shape", "parameters"}, ...]}
/// in the order the forward pass runs them. Layers without parameters of their own that are not
/// modules (pooling, upsampling, concatenation) are named after where they run.
nlohmann::json summarize_model(const config::Config& config);

}  // namespace ssn::train
