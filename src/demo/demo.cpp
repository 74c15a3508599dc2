#include "ssn/demo/demo.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <cmath>
#include <set>

#include "ssn/config/config.h"
#include "ssn/data/synthetic.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/evaluation/evaluate.h"
#include "ssn/io/atomic_file.h"
#include "ssn/report/report.h"
#include "ssn/train/predict.h"
#include "ssn/train/trainer.h"

namespace ssn::demo {
namespace fs = std::filesystem;
namespace {

class Stopwatch {
 public:
  double lap() {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return seconds;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

double summary_mean(const nlohmann::json& summary, const std::string& metric) {
  const auto& entry = summary["metrics"][metric]["mean"];
  return entry.is_number() ? entry.get<double>() : NAN;
}

void prepare_folder(const DemoOptions& options) {
  const fs::path& out = options.out;
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out))) {
    TORCH_CHECK(fs::is_directory(out) && fs::is_regular_file(out / "demo.json"), "--out ",
                out.string(),
                " exists and was not written by `ssn demo` (no demo.json): choose another folder");
    TORCH_CHECK(options.overwrite, "--out ", out.string(),
                " holds an earlier demo: pass --overwrite to replace it, or choose another folder");
    // Only a folder that holds nothing but what a demo writes is deleted.
    static const std::set<std::string> kDemoOutputs = {"demo.json", "data", "lowrank",
                                                       "deterministic", "report.html"};
    for (const auto& entry : fs::directory_iterator(out)) {
      const std::string name = entry.path().filename().string();
      TORCH_CHECK(kDemoOutputs.count(name) || io::is_leftover_name(name), "--out ", out.string(),
                  " holds ", name,
                  ", which `ssn demo` does not write: not deleting it; move it "
                  "away or choose another folder");
    }
    fs::remove_all(out);
  }
  fs::create_directories(out);
}

// Trains one model of the demo in `job` (which calibrates a stochastic one), predicts the test
// split with its best checkpoint and evaluates it with the calibration; records the seconds of
// training and, for a calibrated model, the temperature and the uncalibrated test GED in
// `record`. Returns the evaluation summary.
nlohmann::json train_predict_evaluate(const config::Config& config, const DemoOptions& options,
                                      const fs::path& data_dir, const fs::path& job,
                                      nlohmann::json& record, const std::string& name,
                                      Stopwatch& watch) {
  train::TrainOptions train_options;
  train_options.data.data_dir = data_dir;
  train_options.job_dir = job;
  train_options.seed = options.seed;
  train_options.on_step = options.on_step;
  train::train(config, train_options);
  record["seconds"]["train_" + name] = watch.lap();

  train::PredictOptions predict_options;
  predict_options.data_dir = data_dir;
  predict_options.checkpoint = job / "checkpoint_best.pt";
  predict_options.out = job / "predictions";
  train::predict(config, predict_options);
  evaluation::EvaluationOptions evaluation_options;
  evaluation::SamplingOptions sampling;
  sampling.num_samples = options.eval_samples;
  sampling.seed = options.seed;
  const auto calibration = evaluation::folder_calibration(job / "predictions");
  if (calibration) {
    const nlohmann::json uncalibrated = evaluation::summarise(
        evaluation::evaluate_prediction_folder(job / "predictions", evaluation_options, sampling));
    record["ged_" + name + "_uncalibrated"] = summary_mean(uncalibrated, "ged");
    record["temperature_" + name] = calibration->temperature;
    sampling.controls = calibration->controls();
  }
  return evaluation::write_evaluation(
      job / "evaluation",
      evaluation::evaluate_prediction_folder(job / "predictions", evaluation_options, sampling),
      evaluation::controls_json(sampling.controls));
}

}  // namespace

nlohmann::json demo_config(bool low_rank, const DemoOptions& options) {
  // The CPU-sized recipe of configs/lidc_small_*.json (docs/results.md): covariance frozen for the
  // first third of the epochs, the learning rate cut after two thirds.
  const int64_t epochs = options.epochs;
  nlohmann::json model = {{"input_channels", 1},
                          {"num_classes", 2},
                          {"filters", {16, 32, 64, 64}},
                          {"convs_per_level", 2},
                          {"normalisation", "batch"}};
  if (low_rank) {
    model["rank"] = 10;
    model["log_diag_bias"] = -4.0;
    model["factor_init_scale"] = 0.03;
    model["factor_bias"] = false;  // no spatially constant covariance direction (issue 13)
  }
  nlohmann::json training = {
      {"batch_size", 12}, {"num_epochs", epochs}, {"mean_only_epochs", low_rank ? epochs / 3 : 0}};
  // an average of the weights is what is validated and predicted with (docs/results.md, issue 13)
  if (low_rank) training["ema_decay"] = 0.995;
  return {{"model", {{low_rank ? "StochasticUNet" : "UNet", model}}},
          // every annotator's mask in each step's loss (docs/results.md, issue 13)
          {"data",
           {{"dataset", "lidc"},
            {"crop", 128},
            {"size", options.size},
            {"annotators", 4},
            {"train_targets", "all_annotators"}}},
          {"training", training},
          {"valid", {{"eval_every", 2}, {"num_cases", 100}, {"num_samples", 16}}},
          // the mean averaged over the image's mirror images (docs/results.md, issue 13)
          {"test", {{"mirror", true}}},
          {"loss", low_rank ? nlohmann::json{{"StochasticSegmentationNetworkLossMCIntegral",
                                              {{"num_mc_samples", 20},
                                               // every sample pays (docs/results.md, issue 13)
                                               {"all_samples_weight", 0.5}}}}
                            : nlohmann::json{{"CrossEntropyLoss", nlohmann::json::object()}}},
          {"optimizer", {{"Adam", {{"lr", 1e-3}, {"weight_decay", 1e-5}}}}},
          {"scheduler",
           {{"MultiStepLR",
             {{"milestones", {std::max<int64_t>(1, (2 * epochs) / 3)}}, {"gamma", 0.3}}}}}};
}

DemoResult run_demo(const DemoOptions& options) {
  TORCH_CHECK(options.cases >= 30, "--cases must be >= 30 (3 test cases at least), got ",
              options.cases);
  TORCH_CHECK(options.epochs >= 1, "--epochs must be >= 1, got ", options.epochs);
  TORCH_CHECK(options.size >= 16 && options.size <= 128 && 128 % options.size == 0,
              "--size must divide 128 and be >= 16 (16, 32, 64 or 128), got ", options.size);
  TORCH_CHECK(options.eval_samples >= 1, "--eval-samples must be >= 1, got ", options.eval_samples);
  prepare_folder(options);
  const auto stage = [&](const std::string& line) {
    if (options.on_stage) options.on_stage(line);
  };
  nlohmann::json record = {{"status", "running"}, {"seconds", nlohmann::json::object()}};
  const fs::path record_file = options.out / "demo.json";
  io::write_text_file(record_file, record.dump(2) + "\n");
  Stopwatch total, watch;

  const fs::path data_dir = options.out / "data";
  stage("[1/4] writing a synthetic lidc-like data set (" + std::to_string(options.cases) +
        " images, 4 annotators) to " + data_dir.string());
  data::LidcLikeOptions synth;
  synth.cases = options.cases;
  synth.seed = options.seed;
  data::write_lidc_like(data_dir, synth);
  record["seconds"]["synth"] = watch.lap();

  DemoResult result;
  int step = 2;
  for (const bool low_rank : {true, false}) {
    const std::string name = low_rank ? "lowrank" : "deterministic";
    const fs::path job = options.out / name;
    const config::Config config =
        config::parse_config(demo_config(low_rank, options), "the " + name + " demo config");
    stage("[" + std::to_string(step++) + "/4] training the " +
          (low_rank ? std::string("low-rank SSN (rank 10)") : std::string("deterministic U-Net")) +
          " for " + std::to_string(options.epochs) +
          (options.epochs == 1 ? " epoch in " : " epochs in ") + job.string() +
          ", then predicting and evaluating the test split");
    const nlohmann::json summary =
        train_predict_evaluate(config, options, data_dir, job, record, name, watch);
    record["seconds"]["predict_evaluate_" + name] = watch.lap();
    const double ged = summary_mean(summary, "ged");
    if (low_rank) {
      result.ged_lowrank = ged;
      result.diversity_lowrank = summary_mean(summary, "diversity");
      result.annotator_diversity = summary_mean(summary, "annotator_diversity");
      result.ged_oracle = summary_mean(summary, "ged_oracle");
      record["ged_oracle"] = result.ged_oracle;
      result.temperature = record.value("temperature_lowrank", 1.0);
      result.ged_lowrank_uncalibrated = record.value("ged_lowrank_uncalibrated", ged);
    } else {
      result.ged_deterministic = ged;
    }
    record["ged_" + name] = ged;
    stage("      test GED of the " + name + " model: " + std::to_string(ged));
  }

  stage("[4/4] writing the report");
  report::ReportOptions report_options;
  report_options.job_dirs = {options.out / "lowrank", options.out / "deterministic"};
  report_options.out = options.out / "report.html";
  report_options.seed = options.seed;
  result.report = report::write_report(report_options);
  record["seconds"]["report"] = watch.lap();
  result.seconds = total.lap();
  record["seconds"]["total"] = result.seconds;
  record["status"] = "complete";
  record["report"] = result.report.string();
  record["diversity_lowrank"] = result.diversity_lowrank;
  record["annotator_diversity"] = result.annotator_diversity;
  io::write_text_file(record_file, record.dump(2) + "\n");
  return result;
}

}  // namespace ssn::demo
