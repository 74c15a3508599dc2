#include "ssn/evaluation/calibration.h"

#include <ATen/CPUGeneratorImpl.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ssn/evaluation/evaluate.h"
#include "ssn/io/atomic_file.h"
#include "ssn/metrics/metrics.h"
#include "ssn/metrics/overlap.h"
#include "ssn/predictions/predictions_folder.h"

namespace ssn::evaluation {
namespace fs = std::filesystem;
namespace {

constexpr int kFormatVersion = 1;

// One case, read once: its distribution and its annotations, packed for the overlaps.
struct CalibrationCase {
  LowRankNormal distribution;
  std::vector<int64_t> spatial;
  int64_t classes = 0;
  metrics::PackedLabels annotations;
  at::Tensor annotation_labels;  // [M, *spatial], for whole_image_share
};

// GED and diversity of each setting for one case, all settings from the same noise.
std::vector<CalibrationScore> score_case(const CalibrationCase& c,
                                         const std::vector<SamplingControls>& settings,
                                         int64_t num_samples, uint64_t seed) {
  const auto channels = metrics::foreground_classes(c.classes);
  std::vector<CalibrationScore> scores;
  for (const SamplingControls& controls : settings) {
    at::Generator generator = at::detail::createCPUGenerator(seed);
    std::vector<at::Tensor> labels;
    for_each_sample_chunk(num_samples, c.distribution.event_size(), [&](int64_t, int64_t m) {
      labels.push_back(class_argmax(
          c.distribution.rsample(m, generator, controls).reshape({m, c.classes, -1}), 1));
    });
    std::vector<int64_t> shape = {num_samples};
    shape.insert(shape.end(), c.spatial.begin(), c.spatial.end());
    const at::Tensor samples = at::cat(labels).reshape(shape);
    const metrics::DistributionMetrics m = metrics::distribution_metrics(
        metrics::PackedLabels(samples, c.classes, channels), c.annotations, /*with_hm_iou=*/false);
    const double whole_image = whole_image_share(samples, c.annotation_labels);
    scores.push_back({m.ged, m.diversity, std::isnan(whole_image) ? 0.0 : whole_image});
  }
  return scores;
}

// Per-case scores [case][setting] over the folder's cases, read once per call.
class CalibrationData {
 public:
  CalibrationData(const fs::path& predictions, const CalibrationOptions& options)
      : options_(options) {
    cases_ = predictions::read_prediction_csv(predictions);
    if (options.max_cases > 0 && static_cast<int64_t>(cases_.size()) > options.max_cases) {
      cases_.resize(static_cast<size_t>(options.max_cases));
    }
    TORCH_CHECK(!cases_.empty(), predictions.string(), ": no cases to calibrate on");
  }

  int64_t size() const { return static_cast<int64_t>(cases_.size()); }

  // Scores of every setting on every case: [case][setting], plus the annotators' diversity and
  // whether any annotation covers more than half its image.
  std::vector<std::vector<CalibrationScore>> score(
      const std::vector<SamplingControls>& settings, double* annotator_diversity,
      const runtime::Progress& progress, bool* annotators_draw_whole_images = nullptr) const {
    std::vector<std::vector<CalibrationScore>> scores(cases_.size());
    std::vector<double> annotators(cases_.size());
    std::vector<char> whole(cases_.size(), 0);
    runtime::for_each_case(
        size(),
        [&](int64_t i) {
          const PredictionCase& p = cases_[static_cast<size_t>(i)];
          const PredictionMaps maps = predictions::read_prediction_maps(p);
          const int64_t classes = maps.mean.size(0);
          TORCH_CHECK(!p.annotations.empty(), "case ", p.id,
                      ": calibration needs the annotations of every case");
          const at::Tensor annotations =
              predictions::read_annotations(p, classes, maps.mean.sizes().slice(1)).to(at::kByte);
          const auto channels = metrics::foreground_classes(classes);
          CalibrationCase c{
              distribution_from_maps(maps.mean.unsqueeze(0).to(at::kFloat),
                                     maps.cov_diag.unsqueeze(0).to(at::kFloat),
                                     maps.cov_factor.unsqueeze(0).to(at::kFloat)),
              std::vector<int64_t>(maps.mean.sizes().begin() + 1, maps.mean.sizes().end()), classes,
              metrics::PackedLabels(annotations, classes, channels), annotations};
          annotators[static_cast<size_t>(i)] = annotator_diversity_of(annotations, classes);
          whole[static_cast<size_t>(i)] =
              foreground_coverage(annotations).max().item<double>() > 0.5;
          scores[static_cast<size_t>(i)] = score_case(c, settings, options_.num_samples,
                                                      options_.seed + static_cast<uint64_t>(i));
        },
        progress);
    double sum = 0.0;
    for (double a : annotators) sum += a;
    if (annotator_diversity != nullptr) *annotator_diversity = sum / static_cast<double>(size());
    if (annotators_draw_whole_images != nullptr) {
      *annotators_draw_whole_images = std::find(whole.begin(), whole.end(), 1) != whole.end();
    }
    return scores;
  }

  int64_t classes() const { return predictions::read_prediction_maps(cases_.front()).mean.size(0); }

 private:
  CalibrationOptions options_;
  std::vector<PredictionCase> cases_;
};

CalibrationScore mean_score(const std::vector<std::vector<CalibrationScore>>& scores,
                            size_t setting) {
  CalibrationScore mean;
  for (const auto& row : scores) {
    mean.ged += row[setting].ged;
    mean.diversity += row[setting].diversity;
    mean.whole_image += row[setting].whole_image;
  }
  mean.ged /= static_cast<double>(scores.size());
  mean.diversity /= static_cast<double>(scores.size());
  mean.whole_image /= static_cast<double>(scores.size());
  return mean;
}

// Distance of a setting's diversity from the band [annotators / r, annotators * r], in log ratio
// (0 inside the band, and always 0 without a band).
double outside_band(const CalibrationScore& s, double annotators, double r) {
  if (r <= 0 || annotators <= 0) return 0.0;
  const double ratio = std::log(std::max(s.diversity, 1e-12) / annotators);
  return std::max(0.0, std::fabs(ratio) - std::log(r));
}

// Whether a is the better setting: without whole-image samples where b has some (with
// avoid_whole_image), then nearer to the diversity band, then the lower GED.
bool better(const CalibrationScore& a, const CalibrationScore& b, double annotators, double r,
            bool avoid_whole_image) {
  if (avoid_whole_image && (a.whole_image > 0) != (b.whole_image > 0)) return a.whole_image == 0;
  const double da = outside_band(a, annotators, r), db = outside_band(b, annotators, r);
  if (da != db) return da < db;
  return a.ged < b.ged;
}

size_t best_setting(const std::vector<std::vector<CalibrationScore>>& scores, double annotators,
                    double r, bool avoid_whole_image) {
  size_t best = 0;
  for (size_t s = 1; s < scores.front().size(); ++s) {
    if (better(mean_score(scores, s), mean_score(scores, best), annotators, r, avoid_whole_image)) {
      best = s;
    }
  }
  return best;
}

// Mean and standard error over the cases of GED(setting a) - GED(setting b).
std::pair<double, double> paired_difference(
    const std::vector<std::vector<CalibrationScore>>& scores, size_t a, size_t b) {
  const auto n = static_cast<double>(scores.size());
  double sum = 0.0, sum_sq = 0.0;
  for (const auto& row : scores) {
    const double d = row[a].ged - row[b].ged;
    sum += d;
    sum_sq += d * d;
  }
  const double mean = sum / n;
  const double variance = n > 1 ? std::max(0.0, (sum_sq - n * mean * mean) / (n - 1)) : 0.0;
  return {mean, std::sqrt(variance / n)};
}

// Values rounded to 3 decimals, so that grid points print and compare exactly.
double rounded(double v) { return std::round(v * 1000.0) / 1000.0; }

std::vector<double> range(double first, double last, double step) {
  std::vector<double> values;
  for (int64_t i = 0;; ++i) {
    const double v = rounded(first + static_cast<double>(i) * step);
    if (v > last + 1e-9) break;
    values.push_back(v);
  }
  return values;
}

SamplingControls with(double temperature, const at::Tensor& class_weights) {
  SamplingControls c;
  c.temperature = temperature;
  if (class_weights.defined()) c.class_weights = class_weights.clone();
  return c;
}

nlohmann::json score_json(const CalibrationScore& s) {
  return {{"ged", s.ged}, {"diversity", s.diversity}, {"whole_image_samples", s.whole_image}};
}

}  // namespace

double annotator_diversity_of(const at::Tensor& annotations, int64_t num_classes) {
  const metrics::PackedLabels packed(annotations.to(at::kByte), num_classes,
                                     metrics::foreground_classes(num_classes));
  return metrics::distribution_metrics(packed, packed, /*with_hm_iou=*/false).diversity;
}

SamplingControls Calibration::controls() const { return with(temperature, class_weights); }

Calibration fit_calibration(const fs::path& predictions, const CalibrationOptions& options,
                            const runtime::Progress& progress) {
  TORCH_CHECK(options.num_samples >= 2, "calibration needs >= 2 samples per case, got ",
              options.num_samples);
  TORCH_CHECK(options.max_diversity_ratio == 0 || options.max_diversity_ratio >= 1,
              "calibration: the diversity band's ratio must be 0 (none) or >= 1, got ",
              options.max_diversity_ratio);
  const CalibrationData data(predictions, options);
  const int64_t classes = data.classes();
  const int64_t passes = 2 + (classes - 1);
  int64_t pass = 0;
  const auto pass_progress = [&](int64_t done, int64_t total) {
    if (progress) progress(pass * total + done, passes * total);
  };
  Calibration result;
  result.num_cases = data.size();
  result.num_samples = options.num_samples;
  result.seed = options.seed;
  result.max_diversity_ratio = options.max_diversity_ratio;
  const double r = options.max_diversity_ratio;

  // 1. The temperature on a coarse grid (1 included: the uncalibrated model).
  std::vector<double> grid = range(0.2, 3.0, 0.2);
  std::vector<SamplingControls> settings;
  for (double t : grid) settings.push_back(with(t, {}));
  bool annotators_draw_whole_images = false;
  auto scores = data.score(settings, &result.annotator_diversity, pass_progress,
                           &annotators_draw_whole_images);
  ++pass;
  // Where an annotator paints more than half an image somewhere, such samples are theirs too.
  result.avoid_whole_image = options.avoid_whole_image && !annotators_draw_whole_images;
  const size_t one = static_cast<size_t>(std::find(grid.begin(), grid.end(), 1.0) - grid.begin());
  result.before = mean_score(scores, one);
  if (options.band_reference) {
    TORCH_CHECK(options.band_reference->first >= 0 && options.band_reference->second > 0,
                "calibration: the band's reference needs a diversity >= 0 over >= 1 image, got ",
                options.band_reference->first, " over ", options.band_reference->second);
    result.band_annotator_diversity = options.band_reference->first;
    result.band_annotator_cases = options.band_reference->second;
  }
  const double annotators = result.band_reference();
  const bool avoid = result.avoid_whole_image;
  const size_t coarse = best_setting(scores, annotators, r, avoid);
  size_t lowest = 0;
  for (size_t s = 1; s < grid.size(); ++s) {
    if (mean_score(scores, s).ged < mean_score(scores, lowest).ged) lowest = s;
  }
  result.lowest_ged_temperature = grid[lowest];
  result.lowest_ged = mean_score(scores, lowest);
  double best_t = grid[coarse];
  CalibrationScore best_score = mean_score(scores, coarse);

  // 2. Refined around the best grid point.
  std::vector<double> fine;
  for (double t : range(best_t - 0.1, best_t + 0.1, 0.05)) {
    if (t > 0 && std::fabs(t - best_t) > 1e-9) fine.push_back(t);
  }
  settings.clear();
  for (double t : fine) settings.push_back(with(t, {}));
  scores = data.score(settings, nullptr, pass_progress);
  ++pass;
  for (size_t s = 0; s < fine.size(); ++s) {
    const CalibrationScore candidate = mean_score(scores, s);
    if (better(candidate, best_score, annotators, r, avoid)) {
      best_score = candidate;
      best_t = fine[s];
    }
  }
  result.temperature = best_t;
  result.temperature_only = best_score;
  result.after = best_score;

  // 3. One weight per foreground class, in turn, kept only when it beats the noise.
  at::Tensor weights = at::ones({classes}, at::kFloat);
  bool weighted = false;
  for (int64_t c = 1; c < classes; ++c) {
    std::vector<double> candidates = range(0.6, 1.4, 0.2);
    settings.clear();
    for (double w : candidates) {
      at::Tensor trial = weights.clone();
      trial[c] = w;
      settings.push_back(with(best_t, trial));
    }
    scores = data.score(settings, nullptr, pass_progress);
    ++pass;
    const size_t unit = static_cast<size_t>(std::find(candidates.begin(), candidates.end(), 1.0) -
                                            candidates.begin());
    const size_t best = best_setting(scores, annotators, r, avoid);
    const auto [gain, stderr_] = paired_difference(scores, unit, best);
    // A weight that removes the whole-image samples or brings the diversity into the band is kept
    // on that ground alone; one that only lowers the GED must beat the noise.
    const CalibrationScore with_weight = mean_score(scores, best),
                           without = mean_score(scores, unit);
    const bool cleaner = avoid && with_weight.whole_image == 0 && without.whole_image > 0;
    const bool nearer =
        outside_band(with_weight, annotators, r) < outside_band(without, annotators, r);
    if (best != unit && (cleaner || nearer || gain > 2 * stderr_)) {
      weights[c] = candidates[best];
      weighted = true;
      result.after = mean_score(scores, best);
    }
  }
  if (weighted) result.class_weights = weights;
  return result;
}

void write_calibration(const fs::path& path, const Calibration& calibration) {
  nlohmann::json j;
  j["format"] = "ssn-calibration";
  j["version"] = kFormatVersion;
  j["temperature"] = calibration.temperature;
  if (calibration.class_weights.defined()) {
    std::vector<double> w;
    for (int64_t c = 0; c < calibration.class_weights.numel(); ++c) {
      w.push_back(rounded(calibration.class_weights[c].item<double>()));
    }
    j["class_weights"] = w;
  } else {
    j["class_weights"] = nullptr;
  }
  j["criterion"] =
      std::string(calibration.avoid_whole_image ? "no whole-image samples, then " : "") +
      (calibration.max_diversity_ratio > 0 ? "lowest validation GED with diversity within the band"
                                           : "lowest validation GED");
  j["max_diversity_ratio"] = calibration.max_diversity_ratio;
  j["avoid_whole_image_samples"] = calibration.avoid_whole_image;
  j["mirror"] = calibration.mirror;
  j["validation"] = {{"num_cases", calibration.num_cases},
                     {"num_samples", calibration.num_samples},
                     {"seed", calibration.seed},
                     {"annotator_diversity", calibration.annotator_diversity},
                     {"before", score_json(calibration.before)},
                     {"temperature_only", score_json(calibration.temperature_only)},
                     {"after", score_json(calibration.after)}};
  if (calibration.band_annotator_diversity) {
    j["band_reference"] = {{"annotator_diversity", *calibration.band_annotator_diversity},
                           {"num_cases", calibration.band_annotator_cases}};
  }
  if (calibration.lowest_ged_temperature) {
    nlohmann::json lowest = score_json(calibration.lowest_ged);
    lowest["temperature"] = *calibration.lowest_ged_temperature;
    j["validation"]["lowest_ged"] = lowest;
  }
  if (!calibration.checkpoint_name.empty()) {
    j["checkpoint"] = {{"file", calibration.checkpoint_name},
                       {"size", calibration.checkpoint_size},
                       {"crc32", calibration.checkpoint_crc}};
  }
  io::write_text_file(path, j.dump(2) + "\n");
}

Calibration read_calibration(const fs::path& path) {
  const std::string where = path.string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, where, ": not valid JSON (", e.what(), ")");
  }
  TORCH_CHECK(j.is_object() && j.value("format", "") == "ssn-calibration", where,
              ": expected a JSON object with \"format\": \"ssn-calibration\"");
  TORCH_CHECK(j.value("version", 0) == kFormatVersion, where, ": version ",
              j.contains("version") ? j["version"].dump() : "missing", ", expected ",
              kFormatVersion);
  Calibration c;
  TORCH_CHECK(j.contains("temperature") && j["temperature"].is_number(), where,
              ": field temperature: expected a number");
  c.temperature = j["temperature"].get<double>();
  TORCH_CHECK(std::isfinite(c.temperature) && c.temperature >= 0, where,
              ": field temperature: expected a finite number >= 0, got ", c.temperature);
  if (j.contains("class_weights") && !j["class_weights"].is_null()) {
    const auto& w = j["class_weights"];
    TORCH_CHECK(w.is_array() && w.size() >= 2, where,
                ": field class_weights: expected null or an array of one number per class");
    std::vector<float> values;
    for (const auto& v : w) {
      TORCH_CHECK(v.is_number() && std::isfinite(v.get<double>()), where,
                  ": field class_weights: expected finite numbers, got ", v.dump());
      values.push_back(v.get<float>());
    }
    c.class_weights = at::tensor(values, at::kFloat);
  }
  if (j.contains("max_diversity_ratio")) {
    TORCH_CHECK(j["max_diversity_ratio"].is_number() &&
                    std::isfinite(j["max_diversity_ratio"].get<double>()),
                where, ": field max_diversity_ratio: expected a number");
    c.max_diversity_ratio = j["max_diversity_ratio"].get<double>();
  }
  if (j.contains("mirror")) {
    TORCH_CHECK(j["mirror"].is_boolean(), where, ": field mirror: expected true or false");
    c.mirror = j["mirror"].get<bool>();
  }
  if (j.contains("avoid_whole_image_samples")) {
    TORCH_CHECK(j["avoid_whole_image_samples"].is_boolean(), where,
                ": field avoid_whole_image_samples: expected true or false");
    c.avoid_whole_image = j["avoid_whole_image_samples"].get<bool>();
  }
  try {
    const auto& v = j.at("validation");
    c.num_cases = v.at("num_cases").get<int64_t>();
    c.num_samples = v.at("num_samples").get<int64_t>();
    c.seed = v.at("seed").get<uint64_t>();
    c.annotator_diversity = v.at("annotator_diversity").get<double>();
    for (auto [name, score] :
         {std::pair{"before", &c.before}, std::pair{"temperature_only", &c.temperature_only},
          std::pair{"after", &c.after}}) {
      score->ged = v.at(name).at("ged").get<double>();
      score->diversity = v.at(name).at("diversity").get<double>();
      // Files written before the whole-image guard have no such field.
      score->whole_image = v.at(name).value("whole_image_samples", 0.0);
    }
    if (v.contains("lowest_ged")) {  // files written before the field have none
      const auto& lowest = v["lowest_ged"];
      c.lowest_ged_temperature = lowest.at("temperature").get<double>();
      c.lowest_ged.ged = lowest.at("ged").get<double>();
      c.lowest_ged.diversity = lowest.at("diversity").get<double>();
      c.lowest_ged.whole_image = lowest.at("whole_image_samples").get<double>();
    }
    if (j.contains("band_reference")) {  // files written before the field have none
      c.band_annotator_diversity = j["band_reference"].at("annotator_diversity").get<double>();
      c.band_annotator_cases = j["band_reference"].at("num_cases").get<int64_t>();
      TORCH_CHECK(std::isfinite(*c.band_annotator_diversity) && *c.band_annotator_diversity >= 0 &&
                      c.band_annotator_cases > 0,
                  where, ": field band_reference: expected a diversity >= 0 over >= 1 image");
    }
    if (j.contains("checkpoint")) {
      c.checkpoint_name = j["checkpoint"].at("file").get<std::string>();
      c.checkpoint_size = j["checkpoint"].at("size").get<uint64_t>();
      c.checkpoint_crc = j["checkpoint"].at("crc32").get<uint32_t>();
    }
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, where, ": field validation, band_reference or checkpoint: ", e.what());
  }
  return c;
}

std::optional<Calibration> folder_calibration(const fs::path& predictions) {
  const fs::path path = predictions / kCalibrationFile;
  if (!fs::exists(path)) return std::nullopt;
  return read_calibration(path);
}

std::pair<uint64_t, uint32_t> file_identity(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot open ", path.string());
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t size = 0;
  std::vector<char> buffer(size_t{1} << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(n));
    size += static_cast<uint64_t>(n);
  }
  TORCH_CHECK(in.eof() && !in.bad(), "cannot read ", path.string());
  std::error_code error;
  const auto expected = fs::file_size(path, error);
  TORCH_CHECK(!error && expected == size, path.string(), ": read ", size, " bytes, expected ",
              expected);
  return {size, static_cast<uint32_t>(crc)};
}

std::string describe(const Calibration& c) {
  std::ostringstream out;
  out << "temperature " << c.temperature;
  if (c.class_weights.defined()) {
    out << ", class weights [";
    for (int64_t i = 0; i < c.class_weights.numel(); ++i) {
      out << (i ? ", " : "") << rounded(c.class_weights[i].item<double>());
    }
    out << "]";
  }
  out.precision(4);
  out << std::fixed << "; validation GED " << c.before.ged << " -> " << c.after.ged
      << ", diversity " << c.before.diversity << " -> " << c.after.diversity << " (annotators "
      << c.annotator_diversity;
  if (c.band_annotator_diversity) {
    out << "; over all " << c.band_annotator_cases << " training and validation images "
        << *c.band_annotator_diversity;
  }
  if (c.max_diversity_ratio > 0) out << ", band x" << std::setprecision(2) << c.max_diversity_ratio;
  out << ")";
  if (c.before.whole_image > 0 || c.after.whole_image > 0) {
    out << std::setprecision(2) << "; whole-image samples " << 100 * c.before.whole_image
        << " % -> " << 100 * c.after.whole_image << " %";
  }
  // Say what the band and the whole-image preference cost where it is more than the noise of a
  // validation GED over 100 cases (about 0.002 to 0.005 here).
  if (c.lowest_ged_temperature && c.lowest_ged.ged < c.after.ged - 0.01) {
    out << std::setprecision(4) << "; the lowest validation GED, " << c.lowest_ged.ged
        << " at temperature " << std::setprecision(2) << *c.lowest_ged_temperature
        << ", was set aside (diversity " << c.lowest_ged.diversity / c.band_reference()
        << "x the annotators'";
    if (c.lowest_ged.whole_image > 0) {
      out << ", whole-image samples " << 100 * c.lowest_ged.whole_image << " %";
    }
    out << ")";
  }
  return out.str();
}

}  // namespace ssn::evaluation
