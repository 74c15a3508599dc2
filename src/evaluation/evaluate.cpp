#include "ssn/evaluation/evaluate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "ssn/distributions/low_rank_normal.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/csv.h"
#include "ssn/io/image.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/metrics/metrics.h"
#include "ssn/metrics/overlap.h"
#include "ssn/runtime/parallel_cases.h"

namespace ssn::evaluation {
namespace {

namespace fs = std::filesystem;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Mean over the finite entries (NaN = "class absent from both", skipped); NaN when none.
double nan_mean(const at::Tensor& values) {
  const at::Tensor finite = values.isnan().logical_not();
  const int64_t count = finite.sum().item<int64_t>();
  return count == 0 ? kNaN : values.masked_select(finite).sum().item<double>() / count;
}

std::vector<fs::path> ordered(std::map<int64_t, fs::path>& files, int64_t first,
                              const std::string& id, const char* kind) {
  std::vector<fs::path> out;
  int64_t expected = first;
  for (auto& [index, path] : files) {
    TORCH_CHECK(index == expected, "case ", id, ": ", kind, " files must be numbered from ", first,
                " without gaps; ", kind, " ", expected,
                " is missing (next found: ", path.filename().string(), ")");
    out.push_back(path);
    ++expected;
  }
  return out;
}

}  // namespace

std::vector<SampleCase> find_sample_cases(const fs::path& dir) {
  TORCH_CHECK(fs::is_directory(dir), "samples folder ", dir.string(), " does not exist");
  static const std::regex pattern(R"((.+)_([sl])(\d+)\.(png|nii\.gz|nii|nrrd|mha))");
  std::map<std::string, std::pair<std::map<int64_t, fs::path>, std::map<int64_t, fs::path>>> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, match, pattern)) continue;
    auto& files = found[match[1].str()];
    auto& target = match[2].str() == "s" ? files.first : files.second;
    const int64_t index = std::stoll(match[3].str());
    TORCH_CHECK(target.emplace(index, entry.path()).second, "case ", match[1].str(),
                ": two files with number ", index, " (", name, " and ",
                target[index].filename().string(), ")");
  }
  TORCH_CHECK(!found.empty(), "samples folder ", dir.string(),
              " has no files named <case>_s<i>.png|.nii.gz (samples) and <case>_l<j>.png|.nii.gz "
              "(annotations)");
  std::vector<SampleCase> cases;
  for (auto& [id, files] : found) {
    TORCH_CHECK(!files.first.empty(), "case ", id, " in ", dir.string(),
                " has annotations but no samples (", id, "_s0.*)");
    TORCH_CHECK(!files.second.empty(), "case ", id, " in ", dir.string(),
                " has samples but no annotations (", id, "_l1.*)");
    cases.push_back(
        {id, ordered(files.first, 0, id, "sample"), ordered(files.second, 1, id, "annotation")});
  }
  return cases;
}

// Seeds the draws of ged_oracle (the same in every case and run).
constexpr uint64_t kOracleSeed = 20201207;

at::Tensor foreground_coverage(const at::Tensor& maps) {
  return maps.ne(0).flatten(1).to(at::kDouble).mean(1);
}

double whole_image_share(const at::Tensor& samples, const at::Tensor& annotations) {
  if (foreground_coverage(annotations).max().item<double>() > 0.2) return kNaN;
  return foreground_coverage(samples).gt(0.5).to(at::kDouble).mean().item<double>();
}

MetricRow overlap_metrics(const at::Tensor& samples, const at::Tensor& annotations,
                          const EvaluationOptions& options) {
  const int64_t classes = options.num_classes;
  TORCH_CHECK(!options.brats_regions || classes == 4,
              "the BraTS regions need 4 classes (background, core, oedema, enhancing), got ",
              classes);
  const auto channels = metrics::foreground_classes(classes);
  const metrics::PackedLabels packed_samples(samples, classes, channels);
  const metrics::PackedLabels packed_annotations(annotations, classes, channels);
  const metrics::DistributionMetrics distribution =
      metrics::distribution_metrics(packed_samples, packed_annotations);
  // The floor next to the GED: a perfect model of an annotator process in which every annotation
  // is an equally likely draw, sampled as often as the model was (N draws from the case's own
  // annotations, seeded): what such a model scores with N samples (about the annotators'
  // mean pairwise distance / N, since the plain-mean estimator counts each sample's pair with
  // itself).
  at::Generator oracle_generator = at::detail::createCPUGenerator(kOracleSeed);
  const at::Tensor picks =
      at::randint(annotations.size(0), {samples.size(0)}, oracle_generator, at::kLong);
  // Its samples are annotations, so every distance is one of the M x M between annotations:
  // no pixel is read again.
  const at::Tensor d_yy = metrics::iou_distance(
      metrics::pairwise_overlap(packed_annotations, packed_annotations, /*symmetric=*/true));
  const at::Tensor d_sy = d_yy.index_select(0, picks);
  const double ged_oracle = 2 * d_sy.mean().item<double>() -
                            d_sy.index_select(1, picks).mean().item<double>() -
                            d_yy.mean().item<double>();
  const double whole_image_samples = whole_image_share(samples, annotations);
  MetricRow row = {{"ged", distribution.ged},
                   {"diversity", distribution.diversity},
                   {"annotator_diversity", distribution.annotator_diversity},
                   {"ged_oracle", ged_oracle},
                   {"whole_image_samples", whole_image_samples},
                   {"hm_iou", distribution.hm_iou}};
  const at::Tensor dice =
      metrics::dice(metrics::pairwise_overlap(packed_samples, packed_annotations));  // [N, M, K-1]
  for (int64_t c = 1; c < classes; ++c) {
    row.emplace_back("dice_" + std::to_string(c), nan_mean(dice.select(2, c - 1)));
  }
  if (options.brats_regions) {
    const std::vector<metrics::ClassSet> regions = {{1, 2, 3}, {1, 3}, {3}};
    const at::Tensor region_dice = metrics::dice(
        metrics::pairwise_overlap(metrics::PackedLabels(samples, classes, regions),
                                  metrics::PackedLabels(annotations, classes, regions)));
    row.emplace_back("dice_wt", nan_mean(region_dice.select(2, 0)));
    row.emplace_back("dice_tc", nan_mean(region_dice.select(2, 1)));
    row.emplace_back("dice_et", nan_mean(region_dice.select(2, 2)));
  }
  return row;
}

MetricRow evaluate_labels(const at::Tensor& samples, const at::Tensor& annotations,
                          const EvaluationOptions& options) {
  MetricRow row = overlap_metrics(samples, annotations, options);
  // Label maps carry no probabilities: one-hot samples stand in for the softmax (NCC), and the
  // class frequencies over samples for the confidence (ECE).
  const at::Tensor frequencies = metrics::class_frequencies(samples, options.num_classes);
  row.emplace_back("ncc", metrics::variance_ncc_of_frequencies(frequencies, annotations));
  row.emplace_back("ece", metrics::classwise_ece(frequencies, annotations));
  return row;
}

std::vector<CaseResult> evaluate_sample_folder(const fs::path& dir,
                                               const EvaluationOptions& options,
                                               const Progress& progress) {
  const std::vector<SampleCase> cases = find_sample_cases(dir);
  std::vector<CaseResult> results(cases.size());
  runtime::for_each_case(
      static_cast<int64_t>(cases.size()),
      [&](int64_t i) {
        const SampleCase& c = cases[i];
        const at::Tensor samples = predictions::read_label_maps(c.samples, options.num_classes);
        const at::Tensor annotations = predictions::read_label_maps(
            c.annotations, options.num_classes, samples.sizes().slice(1), c.samples.front());
        if (samples.dim() == 4) {  // volumes: every map on the first sample's voxel grid
          predictions::check_same_geometry(c.annotations, c.samples.front(), 3, c.id);
          predictions::check_same_geometry(c.samples, c.samples.front(), 3, c.id);
        }
        results[i] = {c.id, samples.size(0), evaluate_labels(samples, annotations, options)};
      },
      progress);
  return results;
}

nlohmann::json summarise(const std::vector<CaseResult>& results) {
  TORCH_CHECK(!results.empty(), "no cases to summarise");
  const MetricRow& first = results.front().metrics;
  nlohmann::json metrics = nlohmann::json::object();
  for (size_t k = 0; k < first.size(); ++k) {
    std::vector<double> values;
    for (const auto& result : results) {
      TORCH_CHECK(
          result.metrics.size() == first.size() && result.metrics[k].first == first[k].first,
          "case ", result.id, " has other metrics than case ", results.front().id);
      if (!std::isnan(result.metrics[k].second)) values.push_back(result.metrics[k].second);
    }
    nlohmann::json entry = {{"mean", nullptr}, {"stderr", nullptr}, {"count", values.size()}};
    if (!values.empty()) {
      const double n = static_cast<double>(values.size());
      double mean = 0;
      for (double v : values) mean += v;
      mean /= n;
      entry["mean"] = mean;
      if (values.size() >= 2) {
        double squares = 0;
        for (double v : values) squares += (v - mean) * (v - mean);
        entry["stderr"] = std::sqrt(squares / (n - 1) / n);
      }
    }
    metrics[first[k].first] = entry;
  }
  int64_t samples = results.front().num_samples;
  for (const auto& result : results) {
    if (result.num_samples != samples) samples = -1;  // differs between cases
  }
  return {{"num_cases", results.size()},
          {"num_samples", samples >= 0 ? nlohmann::json(samples) : nlohmann::json(nullptr)},
          {"metrics", metrics}};
}

nlohmann::json controls_json(const SamplingControls& controls) {
  nlohmann::json j = {{"temperature", controls.temperature}, {"class_weights", nullptr}};
  if (controls.class_weights.defined()) {
    std::vector<double> w;
    for (int64_t c = 0; c < controls.class_weights.numel(); ++c) {
      w.push_back(controls.class_weights[c].item<double>());
    }
    j["class_weights"] = w;
  }
  return j;
}

nlohmann::json write_evaluation(const fs::path& out, const std::vector<CaseResult>& results,
                                const nlohmann::json& sampling) {
  nlohmann::json summary = summarise(results);
  if (!sampling.is_null()) summary["sampling"] = sampling;
  std::error_code error;
  fs::create_directories(out, error);
  TORCH_CHECK(!error && fs::is_directory(out), "cannot create the output folder ", out.string(),
              error ? ": " + error.message() : "");
  std::ostringstream csv;
  csv << std::setprecision(17) << "id";
  for (const auto& [name, value] : results.front().metrics) csv << "," << name;
  csv << "\n";
  for (const auto& result : results) {
    csv << result.id;
    for (const auto& [name, value] : result.metrics) {
      csv << ",";
      if (std::isnan(value)) {
        csv << "nan";
      } else {
        csv << value;
      }
    }
    csv << "\n";
  }
  io::write_text_file(out / "metrics.csv", csv.str());
  io::write_text_file(out / "summary.json", summary.dump(2) + "\n");
  return summary;
}

void for_each_sample_chunk(int64_t num_samples, int64_t logits_per_sample,
                           const std::function<void(int64_t, int64_t)>& draw) {
  const int64_t chunk =
      std::max<int64_t>(1, kSampleChunkLogits / std::max<int64_t>(1, logits_per_sample));
  for (int64_t start = 0; start < num_samples; start += chunk) {
    draw(start, std::min(chunk, num_samples - start));
  }
}

MetricRow evaluate_prediction(const at::Tensor& mean, const at::Tensor& cov_diag,
                              const at::Tensor& cov_factor, const at::Tensor& annotations,
                              const EvaluationOptions& options, int64_t num_samples,
                              at::Generator generator, const SamplingControls& controls,
                              at::Device device) {
  TORCH_CHECK(num_samples >= 1, "the number of samples must be >= 1, got ", num_samples);
  const int64_t classes = mean.size(0);
  TORCH_CHECK(classes == options.num_classes, "the mean logits have ", classes,
              " channels, but --num-classes is ", options.num_classes);
  const auto on_device = [&](const at::Tensor& map) {
    return map.unsqueeze(0).to(device, at::kFloat);
  };
  const LowRankNormal distribution =
      distribution_from_maps(on_device(mean), on_device(cov_diag), on_device(cov_factor));
  const SamplingControls device_controls = controls.to(device);
  const int64_t pixels = mean.numel() / classes;
  const at::Tensor targets =
      annotations.to(device, at::kLong).reshape({annotations.size(0), 1, pixels});

  std::vector<at::Tensor> labels;       // [m, S] uint8 per chunk
  std::vector<at::Tensor> likelihoods;  // [m, M] per chunk
  const at::TensorOptions sums = at::TensorOptions(device).dtype(at::kDouble);
  at::Tensor sum_probability = at::zeros({classes, pixels}, sums);
  at::Tensor sum_log = at::zeros({classes, pixels}, sums);
  for_each_sample_chunk(num_samples, mean.numel(), [&](int64_t /*start*/, int64_t m) {
    // The noise of LowRankNormal::rsample, drawn on the CPU whatever the device.
    const at::TensorOptions noise = at::TensorOptions(at::kFloat);
    const at::Tensor eps_W = at::randn({m, 1, distribution.rank()}, generator, noise);
    const at::Tensor eps_D = at::randn({m, 1, distribution.event_size()}, generator, noise);
    const at::Tensor logits =
        distribution.rsample_from_noise(eps_W.to(device), eps_D.to(device), device_controls)
            .reshape({m, classes, pixels});  // [m, C, S]
    const at::Tensor log_p = logits.log_softmax(/*dim=*/1);
    const at::Tensor p = log_p.exp();
    sum_probability += p.sum(/*dim=*/0).to(at::kDouble);
    sum_log += (p + 1e-8).log().sum(/*dim=*/0).to(at::kDouble);  // PHiSeg's eps
    labels.push_back(class_argmax(logits, /*dim=*/1).to(at::kCPU));
    // log p(y_j | eta_m) = sum_s log softmax(eta_m)_s[y_js], [m, M].
    std::vector<at::Tensor> per_annotation;
    for (int64_t j = 0; j < annotations.size(0); ++j) {
      per_annotation.push_back(
          log_p.gather(1, targets[j].unsqueeze(0).expand({m, 1, pixels})).sum({1, 2}));
    }
    likelihoods.push_back(at::stack(per_annotation, /*dim=*/1).to(at::kCPU));
  });
  std::vector<int64_t> sample_shape = {num_samples};
  sample_shape.insert(sample_shape.end(), mean.sizes().begin() + 1, mean.sizes().end());
  const at::Tensor samples = at::cat(labels).reshape(sample_shape);
  const at::Tensor annotation_bytes = annotations.to(at::kByte);

  MetricRow row = overlap_metrics(samples, annotation_bytes, options);
  const at::Tensor mode = mean.argmax(/*dim=*/0).unsqueeze(0).to(at::kByte);
  const auto channels = metrics::foreground_classes(classes);
  const at::Tensor mean_dice = metrics::dice(
      metrics::pairwise_overlap(metrics::PackedLabels(mode, classes, channels),
                                metrics::PackedLabels(annotation_bytes, classes, channels)))[0];
  for (int64_t c = 1; c < classes; ++c) {
    row.emplace_back("dice_mean_" + std::to_string(c), nan_mean(mean_dice.select(1, c - 1)));
  }
  std::vector<int64_t> map_shape(mean.sizes().begin(), mean.sizes().end());
  const at::Tensor mean_probability =
      (sum_probability / num_samples).reshape(map_shape).to(at::kCPU);
  row.emplace_back(
      "ncc",
      metrics::variance_ncc_from_moments(
          mean_probability, (sum_log / num_samples).reshape(map_shape).to(at::kCPU), annotations));
  row.emplace_back("ece", metrics::classwise_ece(mean_probability, annotations));
  row.emplace_back(
      "loglikelihood",
      loss::monte_carlo_log_likelihood(at::cat(likelihoods).to(at::kDouble)).mean().item<double>());
  return row;
}

int64_t classes_of_prediction_folder(const fs::path& dir) {
  const std::vector<PredictionCase> cases =
      predictions::read_prediction_csv(dir, /*require_annotations=*/false);
  return io::read_channels(cases.front().logit_mean).size(0);
}

std::vector<CaseResult> evaluate_prediction_folder(const fs::path& dir,
                                                   const EvaluationOptions& options,
                                                   const SamplingOptions& sampling,
                                                   const Progress& progress) {
  const std::vector<PredictionCase> cases = predictions::read_prediction_csv(dir);
  std::vector<CaseResult> results(cases.size());
  runtime::for_each_case(
      static_cast<int64_t>(cases.size()),
      [&](int64_t i) {
        const PredictionCase& c = cases[i];
        const PredictionMaps maps = predictions::read_prediction_maps(c);
        const at::Tensor annotations =
            predictions::read_annotations(c, options.num_classes, maps.mean.sizes().slice(1));
        at::Generator generator =
            at::detail::createCPUGenerator(sampling.seed + static_cast<uint64_t>(i));
        results[i] = {c.id, sampling.num_samples,
                      evaluate_prediction(maps.mean, maps.cov_diag, maps.cov_factor, annotations,
                                          options, sampling.num_samples, generator,
                                          sampling.controls, sampling.device)};
      },
      progress);
  return results;
}

}  // namespace ssn::evaluation
