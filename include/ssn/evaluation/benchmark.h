#pragma once

// `ssn benchmark evaluate`: times the distribution metrics on the two standard workloads of the
// paper's evaluations, on synthetic label maps.

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace ssn::evaluation {

struct EvaluateWorkload {
  std::string name;
  int64_t num_samples = 0;
  int64_t num_annotations = 0;
  int64_t num_classes = 2;
  std::vector<int64_t> shape;  ///< spatial
  bool with_ncc = true;        ///< PHiSeg's NCC is defined for 2-D images
};

/// (a) LIDC-like: 100 samples x 4 annotations of 128 x 128 binary maps;
/// (b) BraTS-like: 20 samples x 1 annotation of a 4-class 155 x 240 x 240 volume.
std::vector<EvaluateWorkload> standard_evaluate_workloads();

/// Synthetic maps for a workload: [N + M, *spatial] uint8 labels, the first N the samples. Nested
/// blobs (classes 1..K-1 inside one another) whose radii vary from map to map, so maps overlap
/// partially as real samples do.
at::Tensor synthetic_label_maps(const EvaluateWorkload& workload, uint64_t seed);

/// Times ged / diversity / annotator_diversity / hm_iou (and ncc) on the workload's maps, `repeats`
/// times; returns {"name", "seconds" (median), "seconds_all", "metrics", sizes}. With `data_out`,
/// also writes the maps as raw uint8 (<name>.u8, C order) for an external baseline.
nlohmann::json benchmark_evaluate(const EvaluateWorkload& workload, int64_t repeats, uint64_t seed,
                                  const std::filesystem::path& data_out = {});

/// `ssn benchmark sample`: draws `num_samples` label maps (draw_samples: float32, one chunk of
/// samples at a time) from random prediction maps of `classes` x `shape` with a rank-`rank`
/// factor. Returns {"seconds_per_sample", "seconds", "peak_tensor_bytes" (the maps included),
/// "peak_rss_bytes", sizes}.
nlohmann::json benchmark_sample(const std::vector<int64_t>& shape, int64_t classes, int64_t rank,
                                int64_t num_samples, uint64_t seed);

}  // namespace ssn::evaluation
