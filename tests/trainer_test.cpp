#include "ssn/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ssn/data/synthetic.h"
#include "ssn/data/volumes.h"
#include "ssn/evaluation/evaluate.h"
#include "ssn/io/image.h"
#include "ssn/io/png.h"
#include "ssn/predictions/predictions_folder.h"
#include "ssn/train/checkpoint.h"
#include "ssn/train/inference.h"
#include "ssn/train/model_factory.h"
#include "ssn/train/predict.h"
#include "ssn/train/train_log.h"
#include "ssn/train/training_data.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;

config::Config tiny_config(const std::string& model) {
  return config::parse_config(nlohmann::json::parse(
      R"({
    "model": )" +
      model + R"(,
    "data": {"dataset": "lidc", "crop": 16, "size": 16, "annotators": 2},
    "training": {"batch_size": 2, "num_epochs": 2},
    "valid": {"eval_every": 1, "num_cases": 1, "num_samples": 2},
    "loss": )" +
      (model.find("StochasticUNet") != std::string::npos
           ? std::string(
                 R"({"StochasticSegmentationNetworkLossMCIntegral": {"num_mc_samples": 2}})")
           : std::string(R"({"CrossEntropyLoss": {}})")) +
      R"(,
    "optimizer": {"SGD": {"lr": 0.01, "momentum": 0.9}}
  })"));
}

// Options that train on the LIDC-layout folder `root` into root / `job`.
TrainOptions train_options(const fs::path& root, const std::string& job = "job") {
  TrainOptions options;
  options.data.data_dir = root;
  options.job_dir = root / job;
  return options;
}

// A folder in the LIDC crops layout written by hand (not by ssn synth): 16 x 16 images with a
// bright square, two annotators who disagree by one pixel row.
fs::path hand_made_folder() {
  const fs::path root = fs::temp_directory_path() / ("ssn_hand_lidc_" + std::to_string(::getpid()));
  fs::remove_all(root);
  for (const std::string split : {"train", "val", "test"}) {
    for (int p = 0; p < (split == "train" ? 4 : 1); ++p) {
      const std::string patient = "patient" + std::to_string(p);
      fs::create_directories(root / split / "images" / patient);
      fs::create_directories(root / split / "gt" / patient);
      at::Tensor image = at::full({16, 16}, 40, at::kLong);
      image.slice(0, 4 + p, 10 + p).slice(1, 5, 11).fill_(200);
      io::write_label_image(root / split / "images" / patient / "slice7.png", image);
      for (int a = 1; a <= 2; ++a) {
        at::Tensor mask = at::zeros({16, 16}, at::kLong);
        mask.slice(0, 4 + p, 10 + p + (a - 1)).slice(1, 5, 11).fill_(255);
        io::write_label_image(
            root / split / "gt" / patient / ("slice7_l" + std::to_string(a) + ".png"), mask);
      }
    }
  }
  return root;
}

TEST(Trainer, TrainPredictEvaluateOnAHandMadeFolder) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  std::map<std::string, double> one_annotator_loss;  // model -> its first epoch's validation loss
  for (const auto& [model, targets] : std::vector<std::pair<std::string, std::string>>{
           {R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1}})",
            "one_annotator"},
           {R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1}})",
            "all_annotators"},
           {R"({"UNet": {"filters": [4, 8], "convs_per_level": 1}})", "one_annotator"},
           {R"({"UNet": {"filters": [4, 8], "convs_per_level": 1}})", "all_annotators"}}) {
    SCOPED_TRACE(model + ", " + targets);
    config::Config config = tiny_config(model);
    config.data.train_targets = targets;
    TrainOptions options = train_options(root);
    fs::remove_all(options.job_dir);
    const auto log = train(config, options);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_TRUE(std::isfinite(log[1].train_loss));
    EXPECT_TRUE(std::isfinite(log[1].val_ged));
    EXPECT_TRUE(fs::exists(options.job_dir / "checkpoint_best.pt"));
    EXPECT_TRUE(fs::exists(options.job_dir / "train_log.csv"));
    // The two annotators disagree by a row: training on both (and validating against both)
    // gives another loss than one annotator, from the same seed.
    if (targets == "one_annotator") {
      one_annotator_loss[model] = log[0].val_loss;
    } else {
      EXPECT_GT(std::abs(log[0].val_loss - one_annotator_loss.at(model)), 1e-6);
    }

    PredictOptions predict_options;
    predict_options.data_dir = root;
    predict_options.checkpoint = options.job_dir / "checkpoint_last.pt";
    predict_options.out = root / "predictions";
    fs::remove_all(predict_options.out);
    EXPECT_EQ(predict(config, predict_options), 1);
    const auto results = evaluation::evaluate_prediction_folder(
        predict_options.out, evaluation::EvaluationOptions{}, evaluation::SamplingOptions{});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].id, "patient0_slice7");
  }
  fs::remove_all(root);
}

// A folder in the LIDC crops layout with kSeveralCases different images in train and val (a
// square of another place, size and brightness each), two annotators a row apart: more cases
// than one batch of the validation and prediction passes.
constexpr int kSeveralCases = 18;
fs::path several_cases_folder(const std::string& name) {
  const fs::path root = fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  fs::remove_all(root);
  for (const std::string split : {"train", "val"}) {
    for (int p = 0; p < kSeveralCases; ++p) {
      const std::string patient = "patient" + std::to_string(100 + p);
      fs::create_directories(root / split / "images" / patient);
      fs::create_directories(root / split / "gt" / patient);
      at::Tensor image = at::full({16, 16}, 30 + 5 * p, at::kLong);
      image.slice(0, p % 6, 6 + p % 6).slice(1, p % 5, 7 + p % 7).fill_(220 - 4 * p);
      io::write_label_image(root / split / "images" / patient / "s.png", image);
      for (int a = 1; a <= 2; ++a) {
        at::Tensor mask = at::zeros({16, 16}, at::kLong);
        mask.slice(0, p % 6, 6 + p % 6 + a % 2).slice(1, p % 5, 7 + p % 7).fill_(255);
        io::write_label_image(root / split / "gt" / patient / ("s_l" + std::to_string(a) + ".png"),
                              mask);
      }
    }
  }
  return root;
}

// The validation pass puts several images through the network at once; each image's loss and
// samples still draw their noise in turn, so the figures are those of scoring each image alone,
// as the validation did before (chunks of 4 over the 18 cases, the last one partial).
TEST(LidcValidation, ScoresEveryCaseAsABatchOfOneWould) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = several_cases_folder("ssn_valid_lidc");
  constexpr int kCases = kSeveralCases;
  for (const std::string targets : {"one_annotator", "all_annotators"}) {
    SCOPED_TRACE(targets);
    config::Config config =
        tiny_config(R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1}})");
    config.data.train_targets = targets;
    config.valid.num_cases = kCases;
    config.valid.num_samples = 4;
    config.valid.batch_size = 4;
    torch::manual_seed(3);
    nn::SegmentationModel model = build_model(config.model);
    model->eval();
    torch::NoGradGuard no_grad;
    const loss::SegmentationLoss loss_fn = build_loss(config.loss);
    const auto data = make_lidc_training_data(config, root);
    const Validation chunked = data->validate(model, loss_fn, torch::kCPU);

    const data::LidcDataset valid(root, "val", lidc_options(config.data));
    ASSERT_EQ(valid.size(), kCases);
    at::Generator generator = at::detail::createCPUGenerator(12345);
    Validation alone;
    for (int64_t i = 0; i < kCases; ++i) {
      const auto& example = valid[i];
      const at::Tensor target =
          targets == "all_annotators" ? example.annotations : example.annotations[0];
      const Validation v =
          score_batch(model, example.image.unsqueeze(0), target.unsqueeze(0), at::Tensor(),
                      {example.annotations}, config, loss_fn, torch::kCPU, generator);
      alone.loss += v.loss / kCases;
      alone.ged += v.ged / kCases;
    }
    EXPECT_NEAR(chunked.loss, alone.loss, 1e-5 * std::abs(alone.loss));
    EXPECT_NEAR(chunked.ged, alone.ged, 1e-9);
    EXPECT_GT(alone.ged, 0.0);
  }
  fs::remove_all(root);
}

// ssn predict puts test.batch_size images through the network at once (the mirrored passes
// too): every case gets the maps of its own image, as when it is predicted alone.
TEST(Trainer, BatchedPredictionGivesEveryCaseItsOwnMaps) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = several_cases_folder("ssn_batched_predict");
  config::Config config =
      tiny_config(R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1}})");
  TrainOptions options = train_options(root);
  train(config, options);
  const auto predict_with = [&](int64_t batch_size, const std::string& name) {
    config.test.batch_size = batch_size;
    config.test.mirror = true;
    PredictOptions predict_options;
    predict_options.data_dir = root;
    predict_options.split = "val";
    predict_options.checkpoint = options.job_dir / "checkpoint_best.pt";
    predict_options.out = root / name;
    EXPECT_EQ(predict(config, predict_options), kSeveralCases);
    return predictions::read_prediction_csv(predict_options.out);
  };
  const auto alone = predict_with(1, "alone");
  const auto batched = predict_with(4, "batched");  // chunks of 4, the last one of 2
  ASSERT_EQ(alone.size(), batched.size());
  double smallest_gap = 1e9;  // between two cases' means: a mixed-up case would show
  at::Tensor previous;
  for (size_t i = 0; i < alone.size(); ++i) {
    SCOPED_TRACE(alone[i].id);
    EXPECT_EQ(batched[i].id, alone[i].id);
    const auto a = predictions::read_prediction_maps(alone[i]);
    const auto b = predictions::read_prediction_maps(batched[i]);
    const double scale = a.mean.abs().max().item<double>();
    EXPECT_LT((a.mean - b.mean).abs().max().item<double>(), 1e-5 * scale);
    EXPECT_LT((a.cov_factor - b.cov_factor).abs().max().item<double>(),
              1e-5 * a.cov_factor.abs().max().item<double>());
    EXPECT_LT((a.cov_diag - b.cov_diag).abs().max().item<double>(),
              1e-5 * a.cov_diag.abs().max().item<double>());
    if (previous.defined()) {
      smallest_gap = std::min(smallest_gap, (a.mean - previous).abs().max().item<double>() / scale);
    }
    previous = a.mean;
  }
  EXPECT_GT(smallest_gap, 1e-3);
  fs::remove_all(root);
}

// test.mirror: the mean of a mirrored image is the mirrored mean, by construction, where the
// network alone is not equivariant; the covariance is the image's own; and a calibration fitted
// without mirroring is not carried into mirrored predictions.
TEST(Trainer, MirroredPredictionsOfAMirroredFolderAreTheMirroredPredictions) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  config::Config config =
      tiny_config(R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1}})");
  TrainOptions options = train_options(root);
  train(config, options);
  ASSERT_TRUE(fs::exists(options.job_dir / "calibration.json"));
  const fs::path mirrored = root / "mirrored";  // the test split mirrored left to right
  for (const auto& entry : fs::recursive_directory_iterator(root / "test")) {
    if (entry.path().extension() != ".png") continue;
    const fs::path to = mirrored / fs::relative(entry.path(), root);
    fs::create_directories(to.parent_path());
    io::write_label_image(to, io::read_label_image(entry.path()).flip({1}));
  }
  const auto maps_of = [&](const fs::path& data, bool mirror, const std::string& name) {
    config.test.mirror = mirror;
    PredictOptions predict_options;
    predict_options.data_dir = data;
    predict_options.checkpoint = options.job_dir / "checkpoint_best.pt";
    predict_options.out = root / name;
    EXPECT_EQ(predict(config, predict_options), 1);
    EXPECT_EQ(fs::exists(predict_options.out / "calibration.json"), !mirror);
    return predictions::read_prediction_maps(
        predictions::read_prediction_csv(predict_options.out).at(0));
  };
  const auto plain = maps_of(root, false, "plain");
  const auto plain_of_mirrored = maps_of(mirrored, false, "plain_of_mirrored");
  const auto averaged = maps_of(root, true, "averaged");
  const auto averaged_of_mirrored = maps_of(mirrored, true, "averaged_of_mirrored");
  const auto max_difference = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<double>();
  };
  // Equal up to the float32 rounding of sums taken in another order, relative to the largest logit.
  const double scale = plain.mean.abs().max().item<double>();
  EXPECT_GT(max_difference(plain_of_mirrored.mean.flip({2}), plain.mean), 1e-3 * scale);
  EXPECT_LT(max_difference(averaged_of_mirrored.mean.flip({2}), averaged.mean), 1e-5 * scale);
  EXPECT_GT(max_difference(averaged.mean, plain.mean), 1e-3);
  EXPECT_TRUE(averaged.cov_factor.equal(plain.cov_factor));
  EXPECT_TRUE(averaged.cov_diag.equal(plain.cov_diag));
  std::string why_not;
  EXPECT_FALSE(
      checkpoint_calibration(options.job_dir / "checkpoint_best.pt", true, &why_not).has_value());
  EXPECT_THAT(why_not, ::testing::HasSubstr("without test-time mirroring (config test.mirror), "
                                            "and these are made with it"));
  EXPECT_TRUE(checkpoint_calibration(options.job_dir / "checkpoint_best.pt", false).has_value());
  fs::remove_all(root);
}

TEST(Trainer, RefusesToOverwriteARunAndNeedsOneToResume) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  const config::Config config =
      tiny_config(R"({"StochasticUNet": {"rank": 1, "filters": [2], "convs_per_level": 1}})");
  TrainOptions options = train_options(root);
  options.resume = true;
  try {
    train(config, options);
    FAIL() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(),
                ::testing::HasSubstr("cannot resume: no checkpoint_last.pt"));
  }
  options.resume = false;
  train(config, options);
  try {
    train(config, options);
    FAIL() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(),
                ::testing::HasSubstr("already holds a training run (checkpoint_last.pt)"));
  }
  fs::remove_all(root);
}

// model.mean_bias_init "class_frequencies": the run starts with the (mean) logits' bias at the log
// of each class's share of the training annotations. The hand-made folder's train split has four
// images whose two masks cover 36 and 42 of 256 pixels: a foreground share of 39 / 256. With a
// learning rate of 1e-7 one epoch leaves the bias where it started, so checkpoint_last.pt shows it.
TEST(Trainer, MeanBiasStartsAtTheClassSharesOfTheTrainingAnnotations) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  for (const std::string model :
       {R"({"StochasticUNet": {"rank": 1, "filters": [2], "convs_per_level": 1,
                               "mean_bias_init": "class_frequencies"}})",
        R"({"UNet": {"filters": [2], "convs_per_level": 1,
                     "mean_bias_init": "class_frequencies"}})"}) {
    SCOPED_TRACE(model);
    config::Config config = tiny_config(model);
    ASSERT_TRUE(config.model.mean_bias_from_class_frequencies);
    config.training.num_epochs = 1;
    config.optimizer.lr = 1e-7;
    TrainOptions options = train_options(root, "job_bias");
    fs::remove_all(options.job_dir);
    std::vector<std::string> info;
    options.on_info = [&info](const std::string& line) { info.push_back(line); };
    train(config, options);
    ASSERT_EQ(info.size(), 1u);
    EXPECT_THAT(info[0], ::testing::HasSubstr("training annotations 0.8477 0.1523; mean bias "
                                              "-0.1653 -1.882"));
    nn::SegmentationModel trained = build_model(config.model);
    load_model_weights(options.job_dir / "checkpoint_last.pt", *trained);
    const at::Tensor bias = trained->mean_bias();
    EXPECT_NEAR(bias[0].item<double>(), std::log(217.0 / 256), 1e-4);
    EXPECT_NEAR(bias[1].item<double>(), std::log(39.0 / 256), 1e-4);
    // Without the key the bias is the layer's own draw, nowhere near.
    config.model.mean_bias_from_class_frequencies = false;
    fs::remove_all(options.job_dir);
    info.clear();
    train(config, options);
    EXPECT_TRUE(info.empty());
    load_model_weights(options.job_dir / "checkpoint_last.pt", *trained);
    EXPECT_GT(std::abs(trained->mean_bias()[1].item<double>() - std::log(39.0 / 256)), 0.5);
  }
  fs::remove_all(root);
}

// init_mean_bias: softmax of the bias is the shares; a class that never occurs gets log(1e-6);
// the shares must be one per class, each in [0, 1].
TEST(Trainer, InitMeanBiasChecksItsShares) {
  const config::Config config =
      tiny_config(R"({"StochasticUNet": {"rank": 1, "filters": [2], "convs_per_level": 1}})");
  nn::SegmentationModel model = build_model(config.model);
  const std::vector<double> bias = init_mean_bias(*model, {1.0, 0.0});
  EXPECT_DOUBLE_EQ(bias[0], 0.0);
  EXPECT_NEAR(model->mean_bias()[1].item<double>(), std::log(1e-6), 1e-5);
  EXPECT_THROW(init_mean_bias(*model, {0.5, 0.25, 0.25}), c10::Error);
  EXPECT_THROW(init_mean_bias(*model, {1.5, -0.5}), c10::Error);
}

// A deterministic U-Net learns the hand-made squares: the training loss falls by more than half
// and the prediction of the test image overlaps its annotations.
TEST(Trainer, LossFallsAndThePredictionOverlapsTheTarget) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  config::Config config = tiny_config(R"({"UNet": {"filters": [8, 16], "convs_per_level": 1}})");
  config.training.num_epochs = 25;
  config.training.augment = false;
  config.valid.eval_every = 25;
  config.optimizer.kind = config::Optimizer::kAdam;
  config.optimizer.lr = 0.01;
  TrainOptions options = train_options(root);
  const auto log = train(config, options);
  ASSERT_EQ(log.size(), 25u);
  EXPECT_LT(log.back().train_loss, 0.5 * log.front().train_loss);
  PredictOptions predict_options;
  predict_options.data_dir = root;
  predict_options.checkpoint = options.job_dir / "checkpoint_last.pt";
  predict_options.out = root / "predictions";
  predict(config, predict_options);
  const auto results = evaluation::evaluate_prediction_folder(
      predict_options.out, evaluation::EvaluationOptions{}, evaluation::SamplingOptions{4, 0, {}});
  double dice = std::nan("");
  for (const auto& [name, value] : results[0].metrics) {
    if (name == "dice_mean_1") dice = value;
  }
  EXPECT_GT(dice, 0.8);
  fs::remove_all(root);
}

// The schedule and the choice of checkpoints as the log says: MultiStepLR at milestones 1 and 2,
// covariance frozen during mean_only_epochs, checkpoint_best.pt = the first epoch of lowest
// val_ged after the mean-only epoch (the only epoch of the first run, as the fallback, until a
// later one replaces it), marked in the log's best column. Epochs 4 and 5 run at learning rate 0
// (no normalisation layers, so nothing moves): their val_ged ties with epoch 3, and the best
// checkpoint must not be the last one.
TEST(TrainLog, WritesTheBestColumnAndReadsLogsWrittenBeforeIt) {
  EpochRecord r;
  r.epoch = 3;
  r.val_ged = 0.25;
  r.best = true;
  const std::string text = format_train_log({r});
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds,best");
  const auto back = parse_train_log(text, "log");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(back[0].best);
  EXPECT_EQ(back[0].epoch, 3);
  const auto old = parse_train_log(
      "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds\n1,2,3,0.5,0.001,0,1.5\n", "old");
  ASSERT_EQ(old.size(), 1u);
  EXPECT_FALSE(old[0].best);
  EXPECT_DOUBLE_EQ(old[0].val_ged, 0.5);
  try {
    parse_train_log(
        "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds,best\n"
        "1,2,3,0.5,0.001,0,1.5\n",
        "short");
    FAIL() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(),
                ::testing::HasSubstr("short line 2: expected 8 fields, got 7"));
  }
}

// The rates PyTorch 1.13's CosineAnnealingLR(T_max=5, eta_min=1e-5) gives an Adam of lr 1e-3
// after 0..11 epochs of scheduler.step() (printed by /usr/bin/python3 with Debian's torch),
// past T_max included: the closed form is a cosine of period 2 * T_max, as PyTorch's steps are.
TEST(Schedule, CosineAnnealingFollowsPyTorch) {
  config::OptimizerConfig optimizer;
  optimizer.lr = 1e-3;
  config::SchedulerConfig cosine;
  cosine.kind = config::Scheduler::kCosineAnnealingLR;
  cosine.t_max = 5;
  cosine.eta_min = 1e-5;
  const std::vector<double> pytorch = {0.001,
                                       0.000905463412215599,
                                       0.000657963412215599,
                                       0.0003520365877844011,
                                       0.00010453658778440106,
                                       1e-05,
                                       0.00010453658778440102,
                                       0.0003520365877844012,
                                       0.0006579634122155993,
                                       0.0009054634122155996,
                                       0.0010000000000000007,
                                       0.0009054634122155999};
  for (size_t epoch = 0; epoch < pytorch.size(); ++epoch) {
    EXPECT_NEAR(learning_rate(optimizer, cosine, static_cast<int64_t>(epoch)), pytorch[epoch],
                1e-15)
        << "epoch " << epoch;
  }
  // The multi-step schedule is untouched by the cosine's fields.
  config::SchedulerConfig steps;
  steps.milestones = {2, 4};
  steps.gamma = 0.5;
  steps.t_max = 3;
  EXPECT_DOUBLE_EQ(learning_rate(optimizer, steps, 1), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(optimizer, steps, 3), 5e-4);
  EXPECT_DOUBLE_EQ(learning_rate(optimizer, steps, 4), 2.5e-4);
}

TEST(Trainer, ScheduleMeanOnlyEpochsAndBestCheckpointFollowTheLog) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  config::Config config = tiny_config(
      R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1,
                            "normalisation": "none"}})");
  config.training.num_epochs = 1;
  config.training.mean_only_epochs = 1;
  config.scheduler.milestones = {1, 2};
  config.scheduler.gamma = 0.5;
  TrainOptions options = train_options(root);
  options.seed = 5;
  const auto first = train(config, options);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(first[0].best) << "the last epoch when none after the warm-up was validated";
  EXPECT_TRUE(fs::exists(options.job_dir / "checkpoint_best.pt"));
  // After the mean-only epoch the covariance layers are still as initialised; the mean moved.
  torch::manual_seed(options.seed);
  nn::SegmentationModel initial = build_model(config.model);
  nn::SegmentationModel trained = build_model(config.model);
  load_model_weights(options.job_dir / "checkpoint_last.pt", *trained);
  const auto covariance = [](nn::SegmentationModel& m) {
    return m->head()->covariance_parameters();
  };
  for (size_t i = 0; i < covariance(initial).size(); ++i) {
    EXPECT_TRUE(covariance(initial)[i].equal(covariance(trained)[i])) << "covariance tensor " << i;
  }
  EXPECT_FALSE(initial->named_parameters()["head.mean_l.weight"].equal(
      trained->named_parameters()["head.mean_l.weight"]));

  config.training.num_epochs = 3;
  options.resume = true;
  train(config, options);
  load_model_weights(options.job_dir / "checkpoint_last.pt", *trained);
  EXPECT_FALSE(covariance(initial)[0].equal(covariance(trained)[0])) << "trained after epoch 1";
  config.training.num_epochs = 5;
  config.optimizer.lr = 0.0;
  const auto log = train(config, options);
  ASSERT_EQ(log.size(), 5u);
  const std::vector<double> lr = {0.01, 0.01 * 0.5, 0.01 * 0.25, 0.0, 0.0};
  // Rows before a resume come back from the checkpoint's text log (10 significant digits).
  const double tolerance = 1e-9;
  size_t best = 1;  // epoch 1 is the mean-only one
  size_t marked = 0;
  for (size_t e = 0; e < log.size(); ++e) {
    EXPECT_DOUBLE_EQ(log[e].lr, lr[e]) << "epoch " << e + 1;
    // The default criterion: the validation loss.
    if (e >= 1 && log[e].val_loss < log[best].val_loss * (1 - tolerance)) best = e;
    if (log[e].best) marked = e;
  }
  EXPECT_NEAR(log[3].val_loss, log[2].val_loss, tolerance * std::abs(log[2].val_loss))
      << "nothing moves at learning rate 0";
  EXPECT_LT(best, 3u);
  EXPECT_EQ(marked, best) << "the log's last best row is checkpoint_best.pt's epoch";
  EXPECT_TRUE(log[1].best) << "the first epoch after the warm-up replaces the fallback";
  nn::SegmentationModel scratch = build_model(config.model);
  auto optimizer = build_optimizer(config.optimizer, *scratch);
  const TrainingState state =
      load_checkpoint(options.job_dir / "checkpoint_best.pt", *scratch, *optimizer);
  EXPECT_EQ(state.epoch, static_cast<int64_t>(best) + 1);
  EXPECT_NEAR(state.best_ged, log[best].val_ged, 1e-9 * std::abs(log[best].val_ged));
  EXPECT_EQ(state.best_criterion, "val_loss");
  EXPECT_NEAR(state.best_value, log[best].val_loss, 1e-9 * std::abs(log[best].val_loss));

  // Resumed under the other criterion (as a checkpoint written before best_criterion is): the
  // best so far is read off the log, and an epoch replaces it only with a lower validation GED.
  config.valid.best_criterion = config::BestCriterion::kValGed;
  config.training.num_epochs = 6;
  config.optimizer.lr = 0.01;
  const auto more = train(config, options);
  ASSERT_EQ(more.size(), 6u);
  const double threshold = log[best].val_ged;
  ASSERT_GT(std::abs(more[5].val_ged - threshold), tolerance * threshold) << "the model moved";
  EXPECT_EQ(more[5].best, more[5].val_ged < threshold)
      << "epoch 6 (GED " << more[5].val_ged << ") against epoch " << best + 1 << " (GED "
      << threshold << ", loss " << log[best].val_loss << ")";
  fs::remove_all(root);
}

// optimizer.<kind>.covariance_lr_factor: the head's covariance layers form a second parameter
// group whose learning rate is the factor times every other parameter's, through the schedule
// and across a checkpoint; factor 1 keeps one group.
TEST(Trainer, CovarianceLayersStepAtTheirOwnLearningRate) {
  config::Config config = tiny_config(
      R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1,
                            "normalisation": "none"}})");
  const auto built = [&] {
    torch::manual_seed(3);
    return build_model(config.model);
  };
  nn::SegmentationModel same = built();
  nn::SegmentationModel scaled = built();
  auto one_group = build_optimizer(config.optimizer, *same);
  EXPECT_EQ(one_group->param_groups().size(), 1u);
  config::OptimizerConfig factor = config.optimizer;
  factor.covariance_lr_factor = 0.25;
  auto two_groups = build_optimizer(factor, *scaled);
  ASSERT_EQ(two_groups->param_groups().size(), 2u);
  const auto covariance = scaled->head()->covariance_parameters();
  const auto& group = two_groups->param_groups()[1].params();
  ASSERT_EQ(group.size(), covariance.size());
  for (size_t i = 0; i < group.size(); ++i) EXPECT_TRUE(group[i].is_same(covariance[i]));
  EXPECT_EQ(two_groups->param_groups()[0].params().size() + group.size(),
            scaled->parameters().size());
  EXPECT_DOUBLE_EQ(two_groups->param_groups()[1].options().get_lr(), 0.25 * 0.01)
      << "built at the config's rates, before any schedule (ssn benchmark train)";

  set_learning_rate(*one_group, 0.5 * 0.01, config.optimizer);  // after one milestone
  set_learning_rate(*two_groups, 0.5 * 0.01, factor);
  EXPECT_DOUBLE_EQ(two_groups->param_groups()[0].options().get_lr(), 0.005);
  EXPECT_DOUBLE_EQ(two_groups->param_groups()[1].options().get_lr(), 0.00125);
  // SGD's first step moves each weight by lr times its gradient: all ones here.
  const auto step = [](nn::SegmentationModel& model, torch::optim::Optimizer& optimizer) {
    std::map<std::string, at::Tensor> before;
    for (const auto& item : model->named_parameters()) {
      before[item.key()] = item.value().detach().clone();
      item.value().mutable_grad() = at::ones_like(item.value());
    }
    optimizer.step();
    std::map<std::string, at::Tensor> moved;
    for (const auto& item : model->named_parameters()) {
      moved[item.key()] = item.value().detach() - before[item.key()];
    }
    return moved;
  };
  const auto moved_same = step(same, *one_group);
  const auto moved_scaled = step(scaled, *two_groups);
  for (const auto& [name, delta] : moved_same) {
    const bool in_covariance =
        name.rfind("head.log_cov_diag_l.", 0) == 0 || name.rfind("head.cov_factor_l.", 0) == 0;
    EXPECT_TRUE(moved_scaled.at(name).allclose(in_covariance ? 0.25 * delta : delta, 0, 1e-7))
        << name;
  }

  // The two groups' state survives a checkpoint: the next step is the same from the file.
  const fs::path dir = fs::temp_directory_path() / ("ssn_covlr_" + std::to_string(getpid()));
  fs::create_directories(dir);
  TrainingState state;
  state.data_rng = state.noise_rng = state.torch_rng =
      at::detail::createCPUGenerator(1).get_state();
  save_checkpoint(dir / "c.pt", *scaled, *two_groups, state);
  nn::SegmentationModel loaded = built();
  auto loaded_optimizer = build_optimizer(factor, *loaded);
  load_checkpoint(dir / "c.pt", *loaded, *loaded_optimizer);
  set_learning_rate(*loaded_optimizer, 0.5 * 0.01, factor);
  const auto again = step(scaled, *two_groups);
  const auto from_file = step(loaded, *loaded_optimizer);
  for (const auto& [name, delta] : again) EXPECT_TRUE(from_file.at(name).equal(delta)) << name;
  // A checkpoint of two groups does not go into an optimiser of one.
  auto one = build_optimizer(config.optimizer, *loaded);
  try {
    load_checkpoint(dir / "c.pt", *loaded, *one);
    ADD_FAILURE() << "expected an error";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(), ::testing::HasSubstr((dir / "c.pt").string()));
    EXPECT_THAT(error.what_without_backtrace(), ::testing::HasSubstr("covariance_lr_factor"));
  }
  fs::remove_all(dir);
}

// training.ema_decay: the run trains exactly as it would without the average (same losses, same
// weights), `model` of each checkpoint is the average after the formula of config.h, batch norm's
// statistics averaged alike, and --resume continues it exactly.
TEST(Trainer, AveragedWeightsLeaveTrainingAsItWasAndResumeExactly) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root = hand_made_folder();
  config::Config config =
      tiny_config(R"({"StochasticUNet": {"rank": 2, "filters": [4, 8], "convs_per_level": 1}})");
  config.training.batch_size = 4;  // the 4 training cases: one step per epoch
  config.training.num_epochs = 3;
  config.training.mean_only_epochs = 1;
  config.valid.keep_model_every = 1;
  TrainOptions options = train_options(root, "plain");
  options.seed = 7;
  const auto plain = train(config, options);
  config.training.ema_decay = 0.5;
  options.job_dir = root / "averaged";
  const auto averaged = train(config, options);
  ASSERT_EQ(plain.size(), 3u);
  ASSERT_EQ(averaged.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(averaged[e].train_loss, plain[e].train_loss) << "epoch " << e + 1;
  }
  EXPECT_NE(averaged[2].val_loss, plain[2].val_loss) << "the average is validated";

  // Loads a checkpoint of the averaged run: {training weights, average} and its state.
  struct Loaded {
    nn::SegmentationModel weights, average;
    TrainingState state;
  };
  const auto load = [&](const fs::path& path) {
    Loaded l{build_model(config.model), build_model(config.model), {}};
    auto optimizer = build_optimizer(config.optimizer, *l.weights);
    l.state = load_checkpoint(path, *l.weights, *optimizer, l.average.get());
    return l;
  };
  const auto tensors = [](nn::SegmentationModel& m) {
    std::vector<at::Tensor> all = m->parameters();
    for (const auto& b : m->buffers()) all.push_back(b);
    return all;
  };
  nn::SegmentationModel unaveraged = build_model(config.model);
  {
    auto optimizer = build_optimizer(config.optimizer, *unaveraged);
    load_checkpoint(root / "plain" / "checkpoint_last.pt", *unaveraged, *optimizer);
  }
  Loaded last = load(options.job_dir / "checkpoint_last.pt");
  EXPECT_EQ(last.state.ema_updates, 3);
  for (size_t i = 0; i < tensors(unaveraged).size(); ++i) {
    EXPECT_TRUE(tensors(last.weights)[i].equal(tensors(unaveraged)[i])) << "tensor " << i;
  }
  // Epoch 2's average from epoch 1's and epoch 2's weights: one update, the second (n = 1).
  Loaded one = load(options.job_dir / "checkpoint_epoch1.pt");
  Loaded two = load(options.job_dir / "checkpoint_epoch2.pt");
  EXPECT_EQ(one.state.ema_updates, 1);
  const double d = std::min(0.5, 2.0 / 11.0);
  const auto before = tensors(one.average), weights = tensors(two.weights),
             after = tensors(two.average);
  size_t floating = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    if (!after[i].is_floating_point()) {
      EXPECT_TRUE(after[i].equal(weights[i])) << "a step count is copied: tensor " << i;
      continue;
    }
    ++floating;
    EXPECT_TRUE(after[i].allclose(d * before[i] + (1 - d) * weights[i], 1e-5, 1e-7))
        << "tensor " << i;
  }
  EXPECT_GT(floating, 4u);
  EXPECT_FALSE(tensors(last.average)[0].equal(tensors(last.weights)[0]));
  // Prediction loads the average.
  nn::SegmentationModel predicting = build_model(config.model);
  load_model_weights(options.job_dir / "checkpoint_last.pt", *predicting);
  EXPECT_TRUE(tensors(predicting)[0].equal(tensors(last.average)[0]));

  // Two epochs, then --resume for the third: the same checkpoint as the uninterrupted run.
  options.job_dir = root / "resumed";
  config.training.num_epochs = 2;
  train(config, options);
  config.training.num_epochs = 3;
  options.resume = true;
  const auto resumed = train(config, options);
  ASSERT_EQ(resumed.size(), 3u);
  EXPECT_EQ(resumed[2].train_loss, averaged[2].train_loss);
  Loaded again = load(options.job_dir / "checkpoint_last.pt");
  EXPECT_EQ(again.state.ema_updates, 3);
  for (size_t i = 0; i < tensors(again.average).size(); ++i) {
    EXPECT_TRUE(tensors(again.average)[i].equal(tensors(last.average)[i])) << "tensor " << i;
    EXPECT_TRUE(tensors(again.weights)[i].equal(tensors(last.weights)[i])) << "tensor " << i;
  }

  // A checkpoint and a config that disagree about the average are refused, naming the file.
  const auto error_of = [&](const fs::path& path, nn::SegmentationModelImpl* average) {
    auto optimizer = build_optimizer(config.optimizer, *unaveraged);
    try {
      load_checkpoint(path, *unaveraged, *optimizer, average);
    } catch (const c10::Error& error) {
      return std::string(error.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of(options.job_dir / "checkpoint_last.pt", nullptr),
              ::testing::HasSubstr("checkpoint_last.pt holds an average of the weights, but the "
                                   "config has no training.ema_decay"));
  nn::SegmentationModel spare = build_model(config.model);
  EXPECT_THAT(error_of(root / "plain" / "checkpoint_last.pt", spare.get()),
              ::testing::HasSubstr("holds no average of the weights"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace ssn::train

namespace ssn::train {
namespace {

// Volumes with a non-trivial geometry go through train -> predict, and every map of the
// predictions folder carries the geometry of its input (maps with a channel axis: the case's
// geometry extended by a fourth axis).
TEST(Trainer, PredictedVolumesKeepTheGeometryOfTheirInput) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  const fs::path root =
      fs::temp_directory_path() / ("ssn_volume_job_" + std::to_string(::getpid()));
  fs::remove_all(root);
  data::BratsLikeOptions synth;
  synth.cases = 3;
  synth.shape = {24, 28, 26};
  data::write_brats_like(root / "data", synth);
  const config::Config config =
      config::load_config(std::string(SSN_SOURCE_DIR) + "/tests/data/tiny_brats.json");
  TrainOptions options;
  options.data.train_csv = root / "data" / "train.csv";
  options.data.valid_csv = root / "data" / "valid.csv";
  options.job_dir = root / "job";
  const auto log = train(config, options);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_TRUE(std::isfinite(log[0].train_loss));
  EXPECT_TRUE(std::isfinite(log[0].val_ged));

  PredictOptions predict_options;
  predict_options.test_csv = root / "data" / "test.csv";
  predict_options.checkpoint = options.job_dir / "checkpoint_last.pt";
  predict_options.out = root / "predictions";
  EXPECT_EQ(predict(config, predict_options), 1);
  const io::Geometry input =
      io::read_image_with_geometry(root / "data" / "SYN3D-0002" / "SYN3D-0002_flair.nii.gz")
          .geometry;
  EXPECT_FALSE(input.direction == std::vector<double>({1, 0, 0, 0, 1, 0, 0, 0, 1}));
  for (const char* name : {"prediction", "image", "l1"}) {
    const io::Image out = io::read_image_with_geometry(
        predict_options.out / (std::string("SYN3D-0002_") + name + ".nii.gz"));
    EXPECT_EQ(out.pixels.sizes(), (std::vector<int64_t>{24, 28, 26})) << name;
    EXPECT_TRUE(out.geometry.matches(input)) << name << ": " << out.geometry.describe();
  }
  for (const char* name : {"logit_mean", "cov_diag", "cov_factor"}) {
    const io::Image out = io::read_image_with_geometry(
        predict_options.out / (std::string("SYN3D-0002_") + name + ".nii.gz"));
    EXPECT_EQ(out.pixels.size(0), std::string(name) == "cov_factor" ? 8 : 4) << name;
    io::Geometry spatial;
    for (int i = 0; i < 3; ++i) {
      spatial.spacing.push_back(out.geometry.spacing[i]);
      spatial.origin.push_back(out.geometry.origin[i]);
      for (int j = 0; j < 3; ++j) spatial.direction.push_back(out.geometry.direction[i * 4 + j]);
    }
    EXPECT_TRUE(spatial.matches(input)) << name << ": " << out.geometry.describe();
  }
  const auto results = evaluation::evaluate_prediction_folder(
      predict_options.out, evaluation::EvaluationOptions{4, true},
      evaluation::SamplingOptions{4, 0, {}});
  ASSERT_EQ(results.size(), 1u);

  // test.mirror on volumes: the mean is the average over the volume's eight mirror images (the
  // sampling mask mirrored with it), each predicted whole and mirrored back; the covariance is
  // the volume's own.
  config::Config mirrored = config;
  mirrored.test.mirror = true;
  const fs::path plain_folder = predict_options.out;
  predict_options.out = root / "mirrored";
  EXPECT_EQ(predict(mirrored, predict_options), 1);
  nn::SegmentationModel model = build_model(config.model);
  load_model_weights(predict_options.checkpoint, *model);
  model->eval();
  const data::Volume volume = data::load_volume(
      data::read_case_csv(predict_options.test_csv, csv_columns(config.data)).at(0), 4, 3);
  TilingOptions tiling;
  tiling.tile_input = config.test.input_patch_size;
  tiling.batch_size = config.test.batch_size;
  at::Tensor sum;
  for (int bits = 0; bits < 8; ++bits) {
    std::vector<int64_t> axes;  // of the volume's spatial axes; the image has a channel axis first
    for (int64_t a = 0; a < 3; ++a) {
      if (bits & (1 << a)) axes.push_back(a);
    }
    std::vector<int64_t> image_axes;
    for (int64_t a : axes) image_axes.push_back(a + 1);
    const at::Tensor mean =
        predict_image(model, volume.image.flip(image_axes), volume.mask.flip(axes), tiling)
            .mean.flip(image_axes);
    sum = bits == 0 ? mean.clone() : sum + mean;
  }
  const auto maps = predictions::read_prediction_maps(
      predictions::read_prediction_csv(predict_options.out).at(0));
  const auto plain =
      predictions::read_prediction_maps(predictions::read_prediction_csv(plain_folder).at(0));
  const double scale = plain.mean.abs().max().item<double>();
  EXPECT_LT((maps.mean - sum / 8).abs().max().item<double>(), 1e-5 * scale);
  EXPECT_GT((maps.mean - plain.mean).abs().max().item<double>(), 1e-3 * scale);
  EXPECT_TRUE(maps.cov_factor.equal(plain.cov_factor));
  fs::remove_all(root);
}

// A model with dropout (DeepMedic's 1x1 blocks draw from LibTorch's default generator): one epoch,
// then --resume for the second, gives the log of two epochs in one go, and the first row is the
// one written before the resume.
// Trains the tiny BraTS-like DeepMedic with dropout for two epochs on `device`, and again for one
// epoch plus a resumed one; the logs must agree to `tolerance` (relative). On CUDA the loss's
// noise and dropout draw from the device's default generator, kept in the checkpoint.
void expect_exact_resume(const std::string& device, double tolerance,
                         std::vector<std::string>* warnings = nullptr) {
  const fs::path root =
      fs::temp_directory_path() / ("ssn_dropout_job_" + std::to_string(::getpid()));
  fs::remove_all(root);
  data::BratsLikeOptions synth;
  synth.cases = 3;
  synth.shape = {24, 28, 26};
  data::write_brats_like(root / "data", synth);
  config::Config config =
      config::load_config(std::string(SSN_SOURCE_DIR) + "/tests/data/tiny_brats.json");
  config.model.dropout = {0.0, 0.5};
  config.training.num_epochs = 2;
  TrainOptions options;
  options.data.train_csv = root / "data" / "train.csv";
  options.data.valid_csv = root / "data" / "valid.csv";
  options.seed = 3;
  options.device = device;
  options.job_dir = root / "whole";
  const auto whole = train(config, options);

  options.job_dir = root / "resumed";
  config.training.num_epochs = 1;
  const auto first = train(config, options);
  config.training.num_epochs = 2;
  options.resume = true;
  const auto resumed = train(config, options);
  ASSERT_EQ(whole.size(), 2u);
  ASSERT_EQ(resumed.size(), 2u);
  // The log travels in the checkpoint as text with 10 significant digits.
  const auto near = [tolerance](double a, double b) {
    return std::abs(a - b) <= std::max(tolerance, 1e-9) * std::abs(b) + 1e-12;
  };
  EXPECT_TRUE(near(resumed[0].seconds, first[0].seconds)) << "the row before the resume is kept";
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_TRUE(near(resumed[e].train_loss, whole[e].train_loss))
        << "epoch " << e + 1 << ": " << resumed[e].train_loss << " against " << whole[e].train_loss;
    EXPECT_TRUE(near(resumed[e].val_loss, whole[e].val_loss)) << "epoch " << e + 1;
    EXPECT_TRUE(near(resumed[e].val_ged, whole[e].val_ged)) << "epoch " << e + 1;
  }
  if (warnings) {
    // The CPU's checkpoint resumed on this device: another kind of generator state.
    options.job_dir = root / "cpu_made";
    options.resume = false;
    options.device = "cpu";
    config.training.num_epochs = 1;
    train(config, options);
    options.resume = true;
    options.device = device;
    options.on_warning = [warnings](const std::string& w) { warnings->push_back(w); };
    config.training.num_epochs = 2;
    const auto crossed = train(config, options);
    ASSERT_EQ(crossed.size(), 2u);
    EXPECT_TRUE(std::isfinite(crossed[1].train_loss));
  }
  fs::remove_all(root);
}

TEST(Trainer, ResumeOfAModelWithDropoutEqualsAnUninterruptedRun) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  expect_exact_resume("cpu", 1e-9);
}

// On a GPU, the same (cuDNN's convolutions may differ in the last bits between runs: 1e-4); a
// checkpoint made on the CPU resumes there with a warning.
TEST(Trainer, CudaResumeOfAModelWithDropoutEqualsAnUninterruptedRun) {
  if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::string> warnings;
  expect_exact_resume("cuda", 1e-4, &warnings);
  EXPECT_THAT(warnings, ::testing::Contains(
                            ::testing::HasSubstr("written by a run on another kind of device")));
}

}  // namespace
}  // namespace ssn::train
