#pragma once

// Sampling a predicted distribution to files, with the paper's post-hoc controls: temperature,
// per-class and per-rank weights on the noise, and sweeps over one control from the same noise.

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ssn/distributions/low_rank_normal.h"
#include "ssn/evaluation/evaluate.h"

namespace ssn::evaluation {

/// Called with (sample index, labels [*spatial] uint8) for each sample as it is drawn.
using SampleSink = std::function<void(int64_t, const at::Tensor&)>;

/// Pixel-wise summaries of the samples of one case.
struct SampleStatistics {
  at::Tensor frequency;  ///< [C, *spatial] float32: fraction of samples with class c
  at::Tensor entropy;    ///< [*spatial] float32: entropy of `frequency` over classes, in nats
};

/// Labels argmax_c(eta) [m, *spatial] uint8 of m samples eta ~ N(mean, P P^T + D) of one case's
/// maps, `controls` applied, from the noise eps_W [m, R] and eps_D [m, C*S] (as
/// LowRankNormal::rsample_from_noise takes it for a batch of one). One fused pass over the maps:
/// the factor is read where it lies ([C*R, *spatial], no [N, R] copy) and the logits never exist
/// as a tensor; a tie goes to the lower class, as class_argmax. With `counts` ([C, S] int32,
/// contiguous), also adds each sample's label to its class's count.
at::Tensor sample_labels(const PredictionMaps& maps, const at::Tensor& eps_W,
                         const at::Tensor& eps_D, const SamplingControls& controls,
                         const at::Tensor& counts = {});

/// Draws num_samples label maps argmax(eta), eta ~ N(mean, P P^T + D) with `controls` applied to
/// the noise, a chunk of samples at a time through sample_labels (the noise of the diagonal
/// drawn in parallel blocks, so the samples depend on the generator's seed, not on the threads);
/// hands each to `sink` and returns their frequency and entropy maps. Controls are checked against
/// the maps: C class weights, R rank weights, temperature >= 0. On another `device` (CUDA), the
/// maps are moved there and each chunk's logits and labels are computed there from the noise the
/// CPU pass would draw (the diagonal noise rebuilt tile by tile on the CPU): the same samples as
/// on the CPU for the same generator, up to float rounding at ties.
SampleStatistics draw_samples(const PredictionMaps& maps, int64_t num_samples,
                              const SamplingControls& controls, at::Generator generator,
                              const SampleSink& sink = {}, at::Device device = at::kCPU);

/// draw_samples without the fused CPU pass: LowRankNormal::rsample_from_noise and class_argmax
/// on `device` from the same noise. What draw_samples runs off the CPU; on the CPU, a check of
/// the fused pass.
SampleStatistics draw_samples_unfused(const PredictionMaps& maps, int64_t num_samples,
                                      const SamplingControls& controls, at::Generator generator,
                                      const SampleSink& sink = {}, at::Device device = at::kCPU);

/// The same num_samples noise draws pushed through each setting: labels [settings, num_samples,
/// *spatial] uint8, so that a row shows what one control does to the same samples.
at::Tensor sweep_samples(const PredictionMaps& maps, const std::vector<SamplingControls>& settings,
                         int64_t num_samples, at::Generator generator);

/// A sweep over one control: `temperature`, or the weight of class `swept_class`.
struct Sweep {
  enum class Kind { kTemperature, kClassWeight };
  Kind kind = Kind::kTemperature;
  int64_t swept_class = 1;
  std::vector<double> values;

  /// "temperature" or "class:<c>" with values (default: temperature 0, 0.5, 1, 1.5, 2; class
  /// weight -3 ... 3). Throws naming --sweep otherwise.
  static Sweep parse(const std::string& text, std::vector<double> values = {});
  /// "temperature" or "class<c>", for file names.
  std::string name() const;
  /// The row label of value i in figures: "T=0.5", "w1=-3".
  std::string label(size_t i) const;
  /// `base` with the swept control set to value i.
  SamplingControls apply(const SamplingControls& base, size_t i, int64_t num_classes) const;
};

struct SampleFolderOptions {
  /// Samples per case; with a sweep, samples per row of the figure.
  int64_t num_samples = 10;
  SamplingControls controls;
  /// Case i draws from a generator seeded with seed + i, so files do not depend on threading.
  uint64_t seed = 0;
  /// When set, writes the sweep figures instead of label maps.
  std::optional<Sweep> sweep;
  /// Where the logits and labels are computed (draw_samples); the files do not depend on it.
  at::Device device = at::kCPU;
};

/// For every case of a predictions folder (docs/file-formats.md), writes to `out`:
/// <id>_s<i>.<ext> (samples; 0/255 for two classes, class indices otherwise), copies of the
/// annotations, if the case lists any, as <id>_l<j>.<ext> (so `out` is a samples folder for
/// `ssn evaluate --samples`),
/// <id>_frequency.nii.gz [C, *spatial] and <id>_entropy.nii.gz (nats), and for 2-D cases
/// <id>_entropy.png (viridis, 0 .. log C). ext is png for 2-D cases, nii.gz for 3-D ones. With a
/// sweep: <id>_sweep_<name>.png, one row per setting over the case's image. Everything is written
/// to a staging folder that becomes `out` only when complete; `out` must not exist or be empty.
/// Returns the number of cases.
int64_t write_samples(const std::filesystem::path& predictions, const std::filesystem::path& out,
                      const SampleFolderOptions& options, const Progress& progress = {});

/// The RGB figure of a sweep for one case: row per setting, the case's picture (or black) first,
/// then the samples overlaid on it. image [*spatial] or undefined; for 3-D cases the slice with
/// the most foreground in the mean's argmax is shown.
at::Tensor render_sweep(const PredictionMaps& maps, const at::Tensor& image, const Sweep& sweep,
                        const SamplingControls& base, int64_t num_samples, at::Generator generator);

}  // namespace ssn::evaluation
