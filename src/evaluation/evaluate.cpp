#include "ssn/evaluation/evaluate.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <mutex>
#include <iomanip>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/metrics/metrics.h"
#include "ssn/metrics/overlap.h"

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
                " without gaps; ", kind, " ", expected, " is missing (next found: ",
                path.filename().string(), ")");
    out.push_back(path);
    ++expected;
  }
  return out;
}

}  // namespace

std::vector<SampleCase> find_sample_cases(const fs::path& dir) {
  TORCH_CHECK(fs::is_directory(dir), "--samples folder ", dir.string(), " does not exist");
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
  TORCH_CHECK(!found.empty(), "--samples folder ", dir.string(),
              " has no files named <case>_s<i>.png|.nii.gz (samples) and <case>_l<j>.png|.nii.gz "
              "(annotations)");
  std::vector<SampleCase> cases;
  for (auto& [id, files] : found) {
    TORCH_CHECK(!files.first.empty(), "case ", id, " in ", dir.string(),
                " has annotations but no samples (", id, "_s0.*)");
    TORCH_CHECK(!files.second.empty(), "case ", id, " in ", dir.string(),
                " has samples but no annotations (", id, "_l1.*)");
    cases.push_back({id, ordered(files.first, 0, id, "sample"),
                     ordered(files.second, 1, id, "annotation")});
  }
  return cases;
}

MetricRow evaluate_labels(const at::Tensor& samples, const at::Tensor& annotations,
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
  MetricRow row = {{"ged", distribution.ged},
                   {"diversity", distribution.diversity},
                   {"annotator_diversity", distribution.annotator_diversity},
                   {"hm_iou", distribution.hm_iou}};
  const at::Tensor dice =
      metrics::dice(metrics::pairwise_overlap(packed_samples, packed_annotations));  // [N, M, K-1]
  for (int64_t c = 1; c < classes; ++c) {
    row.emplace_back("dice_" + std::to_string(c), nan_mean(dice.select(2, c - 1)));
  }
  if (options.brats_regions) {
    const std::vector<metrics::ClassSet> regions = {{1, 2, 3}, {1, 3}, {3}};
    const at::Tensor region_dice = metrics::dice(metrics::pairwise_overlap(
        metrics::PackedLabels(samples, classes, regions),
        metrics::PackedLabels(annotations, classes, regions)));
    row.emplace_back("dice_wt", nan_mean(region_dice.select(2, 0)));
    row.emplace_back("dice_tc", nan_mean(region_dice.select(2, 1)));
    row.emplace_back("dice_et", nan_mean(region_dice.select(2, 2)));
  }
  // Label maps carry no probabilities: one-hot samples stand in for the softmax (NCC), and the
  // class frequencies over samples for the confidence (ECE).
  const at::Tensor frequencies = metrics::class_frequencies(samples, classes);
  row.emplace_back("ncc", metrics::variance_ncc_of_frequencies(frequencies, annotations));
  row.emplace_back("ece", metrics::classwise_ece(frequencies, annotations));
  return row;
}

namespace {

at::Tensor read_maps(const std::vector<fs::path>& files, const EvaluationOptions& options,
                     const at::IntArrayRef expected_shape, const fs::path& shape_source) {
  std::vector<at::Tensor> maps;
  for (const auto& file : files) {
    at::Tensor labels = io::read_label_image(file);
    if (!expected_shape.empty()) {
      TORCH_CHECK(labels.sizes() == expected_shape, file.string(), " has shape ", labels.sizes(),
                  ", but ", shape_source.filename().string(), " has ", expected_shape);
    }
    if (options.num_classes == 2) {
      labels = labels.ne(0).to(at::kLong);  // 0/255 masks and the like
    } else if (labels.numel() > 0) {
      const int64_t high = labels.max().item<int64_t>();
      const int64_t low = labels.min().item<int64_t>();
      TORCH_CHECK(low >= 0 && high < options.num_classes, file.string(),
                  " holds labels in [", low, ", ", high, "], expected class indices in [0, ",
                  options.num_classes, ") (--num-classes ", options.num_classes, ")");
    }
    maps.push_back(labels.to(at::kByte));  // checked < K <= 256: the packing needs no second pass
  }
  return at::stack(maps);
}

}  // namespace

std::vector<CaseResult> evaluate_sample_folder(const fs::path& dir,
                                               const EvaluationOptions& options,
                                               const Progress& progress) {
  const std::vector<SampleCase> cases = find_sample_cases(dir);
  std::vector<CaseResult> results(cases.size());
  std::mutex progress_mutex;
  int64_t done = 0;
  // Cases are independent: reading and scoring run in parallel across them (the metrics' own
  // parallel loops then run inline).
  at::parallel_for(0, static_cast<int64_t>(cases.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const SampleCase& c = cases[i];
      const at::Tensor samples = read_maps(c.samples, options, {}, {});
      const at::Tensor annotations =
          read_maps(c.annotations, options, samples.sizes().slice(1), c.samples.front());
      results[i] = {c.id, samples.size(0), evaluate_labels(samples, annotations, options)};
      std::lock_guard<std::mutex> lock(progress_mutex);
      ++done;
      if (progress) progress(done, static_cast<int64_t>(cases.size()));
    }
  });
  return results;
}

nlohmann::json summarise(const std::vector<CaseResult>& results) {
  TORCH_CHECK(!results.empty(), "no cases to summarise");
  const MetricRow& first = results.front().metrics;
  nlohmann::json metrics = nlohmann::json::object();
  for (size_t k = 0; k < first.size(); ++k) {
    std::vector<double> values;
    for (const auto& result : results) {
      TORCH_CHECK(result.metrics.size() == first.size() && result.metrics[k].first == first[k].first,
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

nlohmann::json write_evaluation(const fs::path& out, const std::vector<CaseResult>& results) {
  const nlohmann::json summary = summarise(results);
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

}  // namespace ssn::evaluation
