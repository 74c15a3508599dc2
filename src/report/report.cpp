#include "ssn/report/report.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "ssn/draw/pictures.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/evaluation/evaluate.h"
#include "ssn/evaluation/sampling.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"
#include "ssn/predictions/predictions_folder.h"
#include "ssn/train/train_log.h"

namespace ssn::report {
namespace fs = std::filesystem;
namespace {

using draw::black_picture;
using draw::grey_picture;
using draw::heat_picture;
using draw::label_overlay;
using draw::representative_slice;
using draw::upscale;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string number(double value, int precision = 4) {
  if (!std::isfinite(value)) return "&mdash;";
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << value;
  return out.str();
}

std::string short_number(double value) {
  std::ostringstream out;
  out << std::setprecision(3) << value;
  return out.str();
}

std::string img(const at::Tensor& picture, const std::string& alt) {
  return "<img alt=\"" + escape(alt) + "\" src=\"data:image/png;base64," +
         io::rgb_png_base64(picture) + "\">";
}

struct Series {
  std::string name;
  std::string colour;
  std::vector<double> x, y;
};

// A line chart as inline SVG: NaN points are left out (validation runs every few epochs), every
// point gets a marker.
std::string svg_chart(const std::string& title, const std::vector<Series>& series) {
  constexpr double kWidth = 440, kHeight = 260, kLeft = 64, kRight = 12, kTop = 28, kBottom = 40;
  double x_low = INFINITY, x_high = -INFINITY, y_low = INFINITY, y_high = -INFINITY;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x_low = std::min(x_low, s.x[i]);
      x_high = std::max(x_high, s.x[i]);
      y_low = std::min(y_low, s.y[i]);
      y_high = std::max(y_high, s.y[i]);
    }
  }
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" viewBox=\"0 0 " << kWidth << " " << kHeight << "\" class=\"chart\">"
      << "<text x=\"" << kWidth / 2 << "\" y=\"18\" text-anchor=\"middle\" class=\"title\">"
      << escape(title) << "</text>";
  if (!std::isfinite(x_low)) {
    svg << "<text x=\"" << kWidth / 2 << "\" y=\"" << kHeight / 2
        << "\" text-anchor=\"middle\">no finite values</text></svg>";
    return svg.str();
  }
  if (x_high == x_low) x_high = x_low + 1;
  if (y_high == y_low) {
    y_high += 0.5 * std::max(1e-12, std::abs(y_high));
    y_low -= 0.5 * std::max(1e-12, std::abs(y_low));
  }
  const double pad = 0.05 * (y_high - y_low);
  y_low -= pad;
  y_high += pad;
  const auto px = [&](double x) {
    return kLeft + (x - x_low) / (x_high - x_low) * (kWidth - kLeft - kRight);
  };
  const auto py = [&](double y) {
    return kTop + (y_high - y) / (y_high - y_low) * (kHeight - kTop - kBottom);
  };
  svg << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << kWidth - kLeft - kRight
      << "\" height=\"" << kHeight - kTop - kBottom << "\" fill=\"none\" stroke=\"#999\"/>";
  for (int k = 0; k <= 4; ++k) {
    const double y = y_low + (y_high - y_low) * k / 4;
    svg << "<line x1=\"" << kLeft << "\" x2=\"" << kWidth - kRight << "\" y1=\"" << py(y)
        << "\" y2=\"" << py(y) << "\" stroke=\"#eee\"/><text x=\"" << kLeft - 4 << "\" y=\""
        << py(y) + 4 << "\" text-anchor=\"end\">" << short_number(y) << "</text>";
  }
  // Epochs are whole numbers: ticks at every `step`-th epoch, at most 8 of them.
  const double step = std::max(1.0, std::ceil((x_high - x_low) / 7));
  for (double x = std::ceil(x_low); x <= x_high; x += step) {
    svg << "<text x=\"" << px(x) << "\" y=\"" << kHeight - kBottom + 16
        << "\" text-anchor=\"middle\">" << short_number(x) << "</text>";
  }
  svg << "<text x=\"" << (kLeft + kWidth - kRight) / 2 << "\" y=\"" << kHeight - 6
      << "\" text-anchor=\"middle\">epoch</text>";
  double legend_x = kLeft + 8;
  for (const auto& s : series) {
    std::ostringstream points;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      points << px(s.x[i]) << "," << py(s.y[i]) << " ";
      svg << "<circle cx=\"" << px(s.x[i]) << "\" cy=\"" << py(s.y[i]) << "\" r=\"2.5\" fill=\""
          << s.colour << "\"/>";
    }
    svg << "<polyline fill=\"none\" stroke=\"" << s.colour << "\" stroke-width=\"1.8\" points=\""
        << points.str() << "\"/>";
    svg << "<rect x=\"" << legend_x << "\" y=\"" << kTop + 6
        << "\" width=\"10\" height=\"10\" fill=\"" << s.colour << "\"/><text x=\"" << legend_x + 14
        << "\" y=\"" << kTop + 15 << "\">" << escape(s.name) << "</text>";
    legend_x += 24 + 7.0 * static_cast<double>(s.name.size());
  }
  svg << "</svg>";
  return svg.str();
}

std::string model_description(const fs::path& job) {
  const fs::path file = job / "config.json";
  if (!fs::is_regular_file(file)) return "no config.json";
  const nlohmann::json config = nlohmann::json::parse(io::read_text_file(file), nullptr, false);
  if (config.is_discarded() || !config.contains("model") || !config["model"].is_object() ||
      config["model"].empty()) {
    return "config.json without a model section";
  }
  const auto entry = config["model"].begin();
  std::string text = entry.key();
  if (entry.value().is_object() && entry.value().contains("rank")) {
    const auto& rank = entry.value()["rank"];
    text += rank.is_number_integer() && rank.get<int64_t>() == 0
                ? " (diagonal covariance)"
                : " (rank " + rank.dump() + " + diagonal)";
  }
  return text;
}

std::string curves_section(const fs::path& job) {
  const fs::path file = job / "train_log.csv";
  if (!fs::is_regular_file(file)) {
    return "<p class=\"missing\">No train_log.csv in " + escape(job.string()) + ".</p>";
  }
  const auto records = train::read_train_log(file);
  if (records.empty())
    return "<p class=\"missing\">" + escape(file.string()) + " has no epochs.</p>";
  Series train_loss{"train loss", "#1f77b4", {}, {}}, val_loss{"val loss", "#ff7f0e", {}, {}},
      ged{"val GED", "#2ca02c", {}, {}};
  for (const auto& r : records) {
    for (Series* s : {&train_loss, &val_loss, &ged}) s->x.push_back(static_cast<double>(r.epoch));
    train_loss.y.push_back(r.train_loss);
    val_loss.y.push_back(r.val_loss);
    ged.y.push_back(r.val_ged);
  }
  return "<div class=\"row\">" + svg_chart("loss", {train_loss, val_loss}) +
         svg_chart("validation GED (lower is better)", {ged}) + "</div>";
}

// The picture of one map of a case: 3-D maps show `slice`.
at::Tensor planar(const at::Tensor& map, int64_t slice) {
  return map.dim() == 3 ? map.select(0, slice) : map;
}

// One row of the montage (with the header row before the first case): image, annotations, argmax
// of the mean, samples and entropy. Sets `stochastic` when the case's covariance is not zero.
std::string montage_row(const predictions::PredictionCase& c, int64_t i,
                        const ReportOptions& options, const SamplingControls& controls,
                        bool& stochastic) {
  std::ostringstream html;
  const predictions::PredictionMaps maps = predictions::read_prediction_maps(c);
  const int64_t classes = maps.mean.size(0);
  const at::Tensor annotations =
      c.annotations.empty() ? at::empty({0}, at::kByte)
                            : predictions::read_annotations(c, classes, maps.mean.sizes().slice(1));
  const at::Tensor mode = maps.mean.argmax(/*dim=*/0);
  const int64_t slice = mode.dim() == 3 ? representative_slice(mode) : 0;
  const at::Tensor image = c.image.empty() ? at::Tensor() : io::read_image(c.image);
  const at::Tensor background =
      image.defined() ? grey_picture(planar(image, slice))
                      : black_picture(planar(mode, slice).size(0), planar(mode, slice).size(1));
  const int64_t factor =
      std::max<int64_t>(1, 128 / std::max(background.size(0), background.size(1)));
  std::vector<at::Tensor> samples;
  at::Generator generator = at::detail::createCPUGenerator(options.seed + static_cast<uint64_t>(i));
  const evaluation::SampleStatistics statistics =
      evaluation::draw_samples(maps, std::max(options.entropy_samples, options.num_samples),
                               controls, generator, [&](int64_t n, const at::Tensor& labels) {
                                 if (n < options.num_samples) samples.push_back(labels);
                               });
  stochastic = stochastic || maps.cov_factor.abs().max().item<double>() > 0 ||
               maps.cov_diag.max().item<double>() > 1e-9;
  if (i == 0) {
    html << "<tr><th>case</th><th>image</th>";
    for (int64_t j = 0; j < annotations.size(0); ++j) html << "<th>annotation " << j + 1 << "</th>";
    html << "<th>mean</th>";
    for (int64_t n = 0; n < options.num_samples; ++n) html << "<th>sample " << n + 1 << "</th>";
    html << "<th>entropy</th></tr>";
  }
  const auto overlay = [&](const at::Tensor& labels) {
    return upscale(label_overlay(background, planar(labels, slice), classes), factor);
  };
  html << "<tr><td>" << escape(c.id)
       << (mode.dim() == 3 ? "<br>slice " + std::to_string(slice) : "") << "</td><td>"
       << img(upscale(background, factor), "image") << "</td>";
  for (int64_t j = 0; j < annotations.size(0); ++j) {
    html << "<td>" << img(overlay(annotations[j]), "annotation " + std::to_string(j + 1))
         << "</td>";
  }
  html << "<td>" << img(overlay(mode), "argmax of the mean") << "</td>";
  for (size_t n = 0; n < samples.size(); ++n) {
    html << "<td>" << img(overlay(samples[n]), "sample " + std::to_string(n + 1)) << "</td>";
  }
  html << "<td>"
       << img(upscale(heat_picture(planar(statistics.entropy, slice),
                                   std::log(static_cast<double>(classes))),
                      factor),
              "pixel-wise entropy")
       << "</td></tr>";
  return html.str();
}

std::string montage_section(const fs::path& job, const ReportOptions& options) {
  const fs::path predictions = job / "predictions";
  if (!fs::is_regular_file(predictions / "prediction.csv")) {
    return "<p class=\"missing\">No predictions/prediction.csv in " + escape(job.string()) +
           " (write it with <code>ssn predict --out " + escape(predictions.string()) +
           "</code>).</p>";
  }
  const auto cases = predictions::read_prediction_csv(predictions, /*require_annotations=*/false);
  std::ostringstream html;
  const int64_t shown = std::min<int64_t>(options.num_cases, static_cast<int64_t>(cases.size()));
  bool stochastic = false;
  const std::optional<evaluation::Calibration> calibration =
      options.no_calibration ? std::nullopt : evaluation::folder_calibration(predictions);
  const SamplingControls controls = calibration ? calibration->controls() : SamplingControls{};
  html << "<table class=\"montage\">";
  for (int64_t i = 0; i < shown; ++i) {
    html << montage_row(cases[i], i, options, controls, stochastic);
  }
  html << "</table><p class=\"note\">Samples overlaid on the image (class 1 red, 2 green, 3 blue)"
       << (calibration
               ? ", drawn with the calibration (" + escape(evaluation::describe(*calibration)) + ")"
               : std::string(options.no_calibration ? ", uncalibrated (--no-calibration)"
                                                    : ", at temperature 1"))
       << "; entropy of the class frequencies over "
       << std::max(options.entropy_samples, options.num_samples)
       << " samples, from 0 (violet) to log C (yellow).</p>";
  if (stochastic && shown > 0) {
    const predictions::PredictionCase& c = cases.front();
    const predictions::PredictionMaps maps = predictions::read_prediction_maps(c);
    const at::Tensor image = c.image.empty() ? at::Tensor() : io::read_image(c.image);
    html << "<h3>Post-hoc control of the samples (case " << escape(c.id)
         << ")</h3><div class=\"row\">";
    for (const char* kind : {"temperature", "class:1"}) {
      const auto sweep = evaluation::Sweep::parse(kind);
      at::Generator generator = at::detail::createCPUGenerator(options.seed);
      html << "<figure>"
           << img(evaluation::render_sweep(maps, image, sweep, controls, options.num_samples,
                                           generator),
                  "sweep " + sweep.name())
           << "<figcaption>"
           << (sweep.kind == evaluation::Sweep::Kind::kTemperature
                   ? "Temperature T scales the noise: T = 0 is the mean's argmax."
                   : "Weight w1 scales the noise of class 1's logits" +
                         std::string(calibration ? " (at the calibrated temperature)." : "."))
           << " Each column keeps its noise.</figcaption></figure>";
    }
    html << "</div>";
  }
  return html.str();
}

// The job's calibration.json (ssn train / ssn calibrate) and whether its predictions apply it.
std::string calibration_section(const fs::path& job) {
  const fs::path file = job / evaluation::kCalibrationFile;
  const fs::path carried = job / "predictions" / evaluation::kCalibrationFile;
  if (!fs::is_regular_file(file) && !fs::is_regular_file(carried)) {
    const std::string model = model_description(job);
    if (fs::is_regular_file(job / "config.json") && model.rfind("Stochastic", 0) != 0 &&
        model.rfind("config.json", 0) != 0) {
      return "<p class=\"note\">A deterministic model: its samples are its prediction, nothing "
             "to calibrate.</p>";
    }
    return "<p class=\"missing\">No calibration.json in " + escape(job.string()) +
           " (fit it with <code>ssn calibrate --job-dir " + escape(job.string()) +
           " --data-dir DATA</code>); samples are drawn at temperature 1.</p>";
  }
  const evaluation::Calibration c =
      evaluation::read_calibration(fs::is_regular_file(file) ? file : carried);
  std::ostringstream html;
  html << "<table class=\"metrics\"><tr><th>validation (" << c.num_cases << " cases &times; "
       << c.num_samples << " samples)</th><th>temperature</th><th>class weights</th><th>GED</th>"
       << "<th>diversity</th></tr>";
  std::string weights = "&mdash;";
  if (c.class_weights.defined()) {
    std::ostringstream w;
    for (int64_t i = 0; i < c.class_weights.numel(); ++i) {
      w << (i ? ", " : "") << number(c.class_weights[i].item<double>());
    }
    weights = w.str();
  }
  html << "<tr><td>uncalibrated</td><td>1</td><td>&mdash;</td><td>" << number(c.before.ged)
       << "</td><td>" << number(c.before.diversity) << "</td></tr>"
       << "<tr><td>calibrated</td><td>" << number(c.temperature) << "</td><td>" << weights
       << "</td><td>" << number(c.after.ged) << "</td><td>" << number(c.after.diversity)
       << "</td></tr><tr><td>annotators</td><td></td><td></td><td></td><td>"
       << number(c.annotator_diversity) << "</td></tr></table>";
  html << "<p class=\"note\">Fitted for " << escape(c.checkpoint_name)
       << " on the validation split: the temperature (and class weights, kept only where they "
          "beat twice their standard error) with the lowest GED";
  if (c.max_diversity_ratio > 0) {
    html << " among those whose diversity lies within " << number(1 / c.max_diversity_ratio)
         << " &hellip; " << number(c.max_diversity_ratio) << " times the annotators'";
    if (c.band_annotator_diversity) {
      html << " (" << number(*c.band_annotator_diversity) << ", measured over all "
           << c.band_annotator_cases << " training and validation images)";
    }
  }
  if (c.avoid_whole_image) {
    html << ", preferring the settings that draw no whole-image sample (foreground over half the "
            "image where no annotator marks a fifth of it; "
         << number(100 * c.before.whole_image) << " % of the samples uncalibrated, "
         << number(100 * c.after.whole_image) << " % calibrated)";
  }
  html << ". ";
  if (fs::is_regular_file(carried)) {
    html << "The predictions folder carries it: the test metrics and samples below use it.</p>";
  } else if (fs::is_regular_file(job / "predictions" / "prediction.csv")) {
    html << "The predictions folder does not carry it (predicted from another checkpoint, "
            "before the calibration, or with --no-calibration): its samples are uncalibrated.</p>";
  } else {
    html << "</p>";
  }
  return html.str();
}

// The evaluation/summary.json of each job (null where there is none), and the metric names of
// all of them in order of appearance.
std::pair<std::vector<nlohmann::json>, std::vector<std::string>> read_summaries(
    const std::vector<fs::path>& jobs) {
  std::vector<std::string> names;
  std::vector<nlohmann::json> summaries;
  for (const auto& job : jobs) {
    const fs::path file = job / "evaluation" / "summary.json";
    nlohmann::json summary;
    if (fs::is_regular_file(file)) {
      summary = nlohmann::json::parse(io::read_text_file(file), nullptr, false);
      TORCH_CHECK(
          !summary.is_discarded() && summary.contains("metrics") && summary["metrics"].is_object(),
          file.string(), ": expected the summary.json of `ssn evaluate`");
      for (const auto& [name, value] : summary["metrics"].items()) {
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
      }
    }
    summaries.push_back(summary);
  }
  return {summaries, names};
}

// A metric's test mean in a summary (NaN where absent).
double metric_mean(const nlohmann::json& summary, const std::string& name) {
  if (summary.is_null()) return NAN;
  const nlohmann::json entry = summary["metrics"].value(name, nlohmann::json());
  return entry.is_object() && entry.contains("mean") && entry["mean"].is_number()
             ? entry["mean"].get<double>()
             : NAN;
}

std::string metrics_table(const std::vector<fs::path>& jobs) {
  const auto [summaries, names] = read_summaries(jobs);
  if (names.empty()) {
    return "<p class=\"missing\">No evaluation/summary.json in any job folder (write it with "
           "<code>ssn evaluate --predictions JOB/predictions --out JOB/evaluation</code>).</p>";
  }
  std::ostringstream html;
  html << "<table class=\"metrics\"><tr><th>metric</th>";
  for (const auto& job : jobs) html << "<th>" << escape(job.filename().string()) << "</th>";
  html << "</tr><tr><td>cases / samples</td>";
  for (const auto& summary : summaries) {
    html << "<td>"
         << (summary.is_null() ? "&mdash;"
                               : summary.value("num_cases", nlohmann::json()).dump() + " / " +
                                     summary.value("num_samples", nlohmann::json()).dump())
         << "</td>";
  }
  html << "</tr><tr><td>sampling</td>";
  for (const auto& summary : summaries) {
    std::string text = "&mdash;";
    if (!summary.is_null()) {
      const nlohmann::json sampling = summary.value("sampling", nlohmann::json());
      text = "T = 1";
      if (sampling.is_object() && sampling.value("temperature", nlohmann::json()).is_number()) {
        text = "T = " + number(sampling["temperature"].get<double>());
        const nlohmann::json w = sampling.value("class_weights", nlohmann::json());
        if (w.is_array()) text += ", w = " + escape(w.dump());
      }
    }
    html << "<td>" << text << "</td>";
  }
  html << "</tr>";
  for (const auto& name : names) {
    html << "<tr><td>" << escape(name) << "</td>";
    for (const auto& summary : summaries) {
      const nlohmann::json entry =
          summary.is_null() ? nlohmann::json() : summary["metrics"].value(name, nlohmann::json());
      const auto get = [&](const char* key) {
        return entry.is_object() && entry.contains(key) && entry[key].is_number()
                   ? entry[key].get<double>()
                   : NAN;
      };
      html << "<td>" << number(get("mean"));
      if (std::isfinite(get("stderr"))) html << " &plusmn; " << number(get("stderr"));
      html << "</td>";
    }
    html << "</tr>";
  }
  html << "</table><p class=\"note\">Mean &plusmn; standard error over the test cases. GED: lower "
          "is better; diversity: the samples' spread, to compare with annotator_diversity.</p>";
  return html.str();
}

std::string now_utc() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::ostringstream out;
  out << std::put_time(&utc, "%Y-%m-%d %H:%M UTC");
  return out.str();
}

constexpr const char* kStyle = R"(
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1600px; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: center; font-size: 13px; }
table.montage td { padding: 2px; }
table.montage img { display: block; width: 96px; height: auto; image-rendering: pixelated; }
figure { display: inline-block; margin: 0 16px 8px 0; } figure img { image-rendering: pixelated; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.chart text { font-size: 11px; font-family: sans-serif; } .chart .title { font-size: 13px; }
.missing { color: #a33; } .note { color: #666; font-size: 13px; }
)";

}  // namespace

// The seed_<s> job folders of a multi-seed run (ssn train --random-seeds s1 s2 ...), by seed.
std::vector<fs::path> seed_folders(const fs::path& folder) {
  std::vector<std::pair<uint64_t, fs::path>> found;
  if (!fs::is_directory(folder)) return {};
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("seed_", 0) != 0 || name.size() == 5) continue;
    if (name.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    found.emplace_back(std::stoull(name.substr(5)), entry.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> folders;
  for (const auto& [seed, path] : found) folders.push_back(path);
  return folders;
}

// Mean and sample standard deviation over the seeds of each metric's test mean.
std::string seeds_table(const fs::path& group, const std::vector<fs::path>& seeds) {
  const auto [summaries, names] = read_summaries(seeds);
  const bool any = std::any_of(summaries.begin(), summaries.end(),
                               [](const nlohmann::json& s) { return !s.is_null(); });
  std::ostringstream html;
  html << "<h2>" << escape(group.filename().string()) << ": " << seeds.size() << " seeds</h2>\n";
  if (!any) {
    return html.str() + "<p class=\"missing\">No seed folder has evaluation/summary.json.</p>";
  }
  html << "<table class=\"metrics\"><tr><th>metric</th><th>mean &plusmn; SD over seeds</th>";
  for (const auto& job : seeds) html << "<th>" << escape(job.filename().string()) << "</th>";
  html << "</tr>";
  for (const auto& name : names) {
    std::vector<double> values;
    std::ostringstream cells;
    for (const auto& summary : summaries) {
      const double value = metric_mean(summary, name);
      if (std::isfinite(value)) values.push_back(value);
      cells << "<td>" << number(value) << "</td>";
    }
    double mean = NAN, sd = NAN;
    if (!values.empty()) {
      mean = 0;
      for (double v : values) mean += v;
      mean /= static_cast<double>(values.size());
      if (values.size() > 1) {
        double squares = 0;
        for (double v : values) squares += (v - mean) * (v - mean);
        sd = std::sqrt(squares / static_cast<double>(values.size() - 1));
      }
    }
    html << "<tr><td>" << escape(name) << "</td><td>" << number(mean);
    if (std::isfinite(sd)) html << " &plusmn; " << number(sd);
    html << " (" << values.size() << ")</td>" << cells.str() << "</tr>";
  }
  html << "</table><p class=\"note\">Each seed's test mean; their mean &plusmn; sample standard "
          "deviation over the seeds that have it (how many in brackets): the spread between "
          "training runs, which the per-case standard errors above do not include.</p>";
  return html.str();
}

fs::path write_report(const ReportOptions& options_in) {
  // A folder of seed_<s> runs stands for its runs; its seeds are summarised together.
  ReportOptions options = options_in;
  std::vector<std::pair<fs::path, std::vector<fs::path>>> groups;
  options.job_dirs.clear();
  for (const auto& job : options_in.job_dirs) {
    const bool is_job = fs::is_regular_file(job / "train_log.csv") ||
                        fs::is_regular_file(job / "predictions" / "prediction.csv") ||
                        fs::is_regular_file(job / "evaluation" / "summary.json");
    const std::vector<fs::path> seeds = is_job ? std::vector<fs::path>{} : seed_folders(job);
    if (seeds.empty()) {
      options.job_dirs.push_back(job);
    } else {
      groups.emplace_back(job, seeds);
      options.job_dirs.insert(options.job_dirs.end(), seeds.begin(), seeds.end());
    }
  }
  TORCH_CHECK(!options.job_dirs.empty(), "report: expected at least one job folder");
  TORCH_CHECK(options.num_cases >= 1, "the number of cases must be >= 1, got ", options.num_cases);
  TORCH_CHECK(options.num_samples >= 1, "the number of samples must be >= 1, got ",
              options.num_samples);
  for (const auto& job : options.job_dirs) {
    TORCH_CHECK(fs::is_directory(job), "job folder ", job.string(), ": no such folder");
    TORCH_CHECK(fs::is_regular_file(job / "train_log.csv") ||
                    fs::is_regular_file(job / "predictions" / "prediction.csv") ||
                    fs::is_regular_file(job / "evaluation" / "summary.json"),
                "folder ", job.string(),
                " is not a job folder: it has none of train_log.csv, predictions/prediction.csv, "
                "evaluation/summary.json");
  }
  const fs::path out = !options.out.empty() ? options.out
                       : !groups.empty() && groups.front().first == options_in.job_dirs.front()
                           ? groups.front().first / "report.html"
                           : options.job_dirs.front() / "report.html";
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ssn "
          "report</title>"
       << "<style>" << kStyle
       << "</style></head><body>\n<h1>Stochastic Segmentation Network report</h1>"
       << "<p class=\"sub\">" << now_utc() << " &middot; ";
  for (size_t i = 0; i < options.job_dirs.size(); ++i) {
    html << (i ? ", " : "") << "<code>" << escape(options.job_dirs[i].string()) << "</code>";
  }
  html << "</p>\n<h2>Test metrics</h2>\n" << metrics_table(options.job_dirs) << "\n";
  for (const auto& [group, seeds] : groups) html << seeds_table(group, seeds) << "\n";
  for (const auto& job : options.job_dirs) {
    html << "<h2>" << escape(job.filename().string()) << " &mdash; "
         << escape(model_description(job)) << "</h2>\n<h3>Learning curves</h3>\n"
         << curves_section(job) << "\n<h3>Calibration</h3>\n"
         << calibration_section(job) << "\n<h3>Test cases</h3>\n"
         << montage_section(job, options) << "\n";
  }
  html << "</body></html>\n";
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  io::write_text_file(out, html.str());
  return out;
}

}  // namespace ssn::report
