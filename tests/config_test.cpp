#include "ssn/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <tuple>

#include "ssn/demo/demo.h"
#include "ssn/train/model_factory.h"

namespace ssn::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string error_of(const json& config) {
  try {
    parse_config(config, "cfg.json");
  } catch (const c10::Error& error) {
    return error.what_without_backtrace();
  }
  return "<no error>";
}

json minimal() {
  return json::parse(R"({"model": {"StochasticUNet": {"rank": 3}},
                         "loss": {"StochasticSegmentationNetworkLossMCIntegral": {"num_mc_samples": 4}}})");
}

TEST(Config, ShippedSmallConfigsParseAndDifferOnlyInTheModelKind) {
  for (const char* kind : {"lowrank", "diagonal", "deterministic"}) {
    const Config c =
        load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_small_" + kind + ".json");
    EXPECT_EQ(c.data.size, 64) << kind;
    EXPECT_EQ(c.training.batch_size, 12) << kind;
    EXPECT_EQ(c.model.filters, std::vector<int64_t>({16, 32, 64, 64})) << kind;
    EXPECT_TRUE(c.test.mirror) << kind;
    EXPECT_EQ(c.data.train_targets, "all_annotators") << kind;
  }
  const Config cpu = load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_cpu_lowrank.json");
  EXPECT_TRUE(cpu.test.mirror);
  EXPECT_EQ(cpu.data.train_targets, "all_annotators");
  EXPECT_EQ(cpu.scheduler.kind, Scheduler::kCosineAnnealingLR);  // measured: docs/results.md
  EXPECT_EQ(cpu.scheduler.t_max, cpu.training.num_epochs);
  EXPECT_EQ(
      load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_small_diagonal.json").model.kind,
      nn::ModelKind::kDiagonal);
  const Config paper = load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_unet_rank10.json");
  EXPECT_EQ(paper.model.rank, 10);
  EXPECT_EQ(paper.loss.num_mc_samples, 20);
  EXPECT_EQ(paper.model.filters, std::vector<int64_t>({32, 64, 128, 192, 192, 192, 192}));
  EXPECT_FALSE(paper.test.mirror);  // the paper's set-up has no test-time mirroring
  EXPECT_EQ(paper.data.train_targets, "one_annotator");  // nor all annotators in each step
}

// `ssn demo` builds its low-rank config in code: it is configs/lidc_small_lowrank.json, key for
// key, so that the demo's figures are the shipped config's.
TEST(Config, TheDemosLowRankConfigIsTheShippedOne) {
  const Config shipped =
      load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_small_lowrank.json");
  EXPECT_EQ(demo::demo_config(/*low_rank=*/true, demo::DemoOptions{}), shipped.source);
}

// factor_bias: the reference's conv with a bias by default; false builds a factor conv without one
// (the CPU LIDC config's choice), and anything but a bool is refused by name.
TEST(Config, FactorBiasIsABoolThatRemovesTheFactorConvsBias) {
  EXPECT_TRUE(parse_config(minimal(), "cfg.json").model.factor_bias);
  json config = minimal();
  config["model"]["StochasticUNet"]["factor_bias"] = false;
  const Config c = parse_config(config, "cfg.json");
  EXPECT_FALSE(c.model.factor_bias);
  const nn::SegmentationModel model = train::build_model(c.model);
  const auto parameters = model->named_parameters();
  EXPECT_TRUE(parameters.contains("head.cov_factor_l.weight"));
  EXPECT_FALSE(parameters.contains("head.cov_factor_l.bias"));
  EXPECT_TRUE(parameters.contains("head.mean_l.bias"));
  EXPECT_TRUE(load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_small_lowrank.json")
                  .model.factor_bias == false);
  config["model"]["StochasticUNet"]["factor_bias"] = 0;
  EXPECT_THAT(error_of(config), HasSubstr("model.StochasticUNet.factor_bias has the wrong type"));
}

// checkpoint_best.pt's criterion: the validation loss unless the config names the GED.
TEST(Config, BestCriterionIsTheValidationLossUnlessNamed) {
  EXPECT_EQ(parse_config(minimal(), "cfg.json").valid.best_criterion, BestCriterion::kValLoss);
  json config = minimal();
  config["valid"]["best_criterion"] = "val_ged";
  EXPECT_EQ(parse_config(config, "cfg.json").valid.best_criterion, BestCriterion::kValGed);
  config["valid"]["best_criterion"] = "ged";
  EXPECT_THAT(error_of(config),
              HasSubstr("cfg.json: valid.best_criterion must be \"val_loss\" or \"val_ged\", "
                        "got \"ged\""));
}

TEST(Config, TrainTargetsAreOneAnnotatorUnlessNamed) {
  EXPECT_EQ(parse_config(minimal(), "cfg.json").data.train_targets, "one_annotator");
  json config = minimal();
  config["data"]["train_targets"] = "all_annotators";
  EXPECT_EQ(parse_config(config, "cfg.json").data.train_targets, "all_annotators");
  config["data"]["train_targets"] = "all";
  EXPECT_THAT(error_of(config),
              HasSubstr("cfg.json: data.train_targets must be \"one_annotator\" or "
                        "\"all_annotators\", got \"all\""));
}

// The U-Net variants PHiSeg's network needs are read by name; bad values name the file and key.
TEST(Config, UNetVariantsAreReadAndBadValuesNamed) {
  const Config paper = load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_unet_rank10.json");
  EXPECT_EQ(paper.model.pooling, nn::Pooling::kAverage);
  EXPECT_EQ(paper.model.upsampling, nn::Upsampling::kLinearTf1);
  EXPECT_EQ(paper.model.decoder_widths, nn::DecoderWidths::kLevelBelow);
  EXPECT_EQ(paper.model.recombination, std::vector<int64_t>({32, 32, 32}));
  EXPECT_EQ(paper.model.batch_norm_epsilon, 1e-3);
  EXPECT_EQ(paper.model.batch_norm_momentum, 0.01);
  EXPECT_TRUE(paper.model.he_normal_init);
  EXPECT_EQ(paper.optimizer.weight_decay, 0.0);
  EXPECT_EQ(paper.data.intensity, "minus_half");
  EXPECT_EQ(paper.data.augmentation, "phiseg");
  const Config plain = parse_config(minimal(), "cfg.json");
  EXPECT_EQ(plain.model.pooling, nn::Pooling::kMax);
  EXPECT_FALSE(plain.model.he_normal_init);
  for (const auto& [key, value, message] : std::vector<std::tuple<std::string, json, std::string>>{
           {"upsampling", "nearest", "model.StochasticUNet.upsampling: upsampling must be"},
           {"decoder_widths", "wide", "model.StochasticUNet.decoder_widths: decoder_widths must"},
           {"recombination", json::array({32, 0}), "recombination: widths must be >= 1"},
           {"batch_norm_momentum", 1.5, "batch_norm_momentum must be in [0, 1]"},
           {"init", "xavier", "init must be \"default\" or \"he_normal\""},
           {"mean_bias_init", "prior",
            "model.StochasticUNet.mean_bias_init must be \"default\" or \"class_frequencies\", "
            "got \"prior\""}}) {
    json c = minimal();
    c["model"]["StochasticUNet"][key] = value;
    EXPECT_THAT(error_of(c), HasSubstr(message)) << key;
  }
}

// "init": "he_normal" draws every convolution weight from TensorFlow 1's truncated He normal
// (standard deviation sqrt(2.6 / fan_in) cut at two of them) and zeroes the biases.
TEST(Config, HeNormalInitIsTensorFlowsTruncatedNormal) {
  json c = minimal();
  c["model"]["StochasticUNet"]["init"] = "he_normal";
  c["model"]["StochasticUNet"]["filters"] = json::array({16, 32});
  const nn::SegmentationModel model = train::build_model(parse_config(c, "cfg.json").model);
  const auto parameters = model->named_parameters();
  const at::Tensor w = parameters["backbone.encoder.1.3.weight"];  // 3x3, 32 from 32
  const double sigma = std::sqrt(1.3 * 2.0 / (32 * 9));
  EXPECT_LE(w.abs().max().item<double>(), 2 * sigma);
  // A normal truncated at 2 sigma has a standard deviation of 0.880 sigma.
  EXPECT_NEAR(w.std().item<double>(), 0.880 * sigma, 0.03 * sigma);
  EXPECT_TRUE(parameters["head.mean_l.bias"].eq(0).all().item<bool>());
  EXPECT_LE(parameters["head.mean_l.weight"].abs().max().item<double>(),
            2 * std::sqrt(2.6 / 16) + 1e-7);
}

TEST(Config, UnknownKeysAndWrongTypesNameTheirPath) {
  json c = minimal();
  c["model"]["StochasticUNet"]["rnk"] = 3;
  EXPECT_THAT(error_of(c), HasSubstr("cfg.json: unknown key model.StochasticUNet.rnk"));
  c = minimal();
  c["training"] = {{"batch_size", "12"}};
  EXPECT_THAT(error_of(c), HasSubstr("training.batch_size must be an integer, got \"12\""));
  c = minimal();
  c["training"] = {{"ema_decay", 1.0}};
  EXPECT_THAT(error_of(c), HasSubstr("training.ema_decay must be in [0, 1)"));
  c = minimal();
  c["optimizer"] = {{"Adam", {{"lr", 1e-3}, {"covariance_lr_factor", 0.0}}}};
  EXPECT_THAT(error_of(c), HasSubstr("optimizer.Adam.covariance_lr_factor must be > 0, got 0"));
  c = minimal();
  c["scheduler"] = {{"CosineAnnealingLR", {{"eta_min", 0.0}}}};
  EXPECT_THAT(error_of(c), HasSubstr("scheduler.CosineAnnealingLR.T_max is required"));
  c["scheduler"] = {{"CosineAnnealingLR", {{"T_max", 0}}}};
  EXPECT_THAT(error_of(c), HasSubstr("scheduler.CosineAnnealingLR.T_max must be >= 1, got 0"));
  c["scheduler"] = {{"CosineAnnealingLR", {{"T_max", 8}, {"eta_min", -1e-5}}}};
  EXPECT_THAT(error_of(c), HasSubstr("scheduler.CosineAnnealingLR.eta_min must be >= 0"));
  c["scheduler"] = {{"CosineAnnealingLR", {{"T_max", 8}, {"gamma", 0.1}}}};
  EXPECT_THAT(error_of(c), HasSubstr("unknown key scheduler.CosineAnnealingLR.gamma"));
  c["scheduler"] = {{"CosineAnnealingLR", {{"T_max", 8}, {"eta_min", 1e-5}}}};
  const Config cosine = parse_config(c, "cfg.json");
  EXPECT_EQ(cosine.scheduler.kind, Scheduler::kCosineAnnealingLR);
  EXPECT_EQ(cosine.scheduler.t_max, 8);
  EXPECT_DOUBLE_EQ(cosine.scheduler.eta_min, 1e-5);
  EXPECT_EQ(parse_config(minimal(), "cfg.json").scheduler.kind, Scheduler::kMultiStepLR);
  c = minimal();
  c["optimiser"] = json::object();
  EXPECT_THAT(error_of(c), HasSubstr("unknown key config.optimiser"));
  c = minimal();
  c["optimizer"] = {{"Adagrad", json::object()}};
  EXPECT_THAT(error_of(c), HasSubstr("unknown optimizer \"Adagrad\""));
  c = minimal();
  c["loss"] = {{"CrossEntropyLoss", json::object()}};
  EXPECT_THAT(error_of(c), HasSubstr("model StochasticUNet needs the loss "
                                     "StochasticSegmentationNetworkLossMCIntegral"));
  c = minimal();
  c["loss"]["StochasticSegmentationNetworkLossMCIntegral"]["num_mc_samples"] = 5;
  EXPECT_THAT(error_of(c), HasSubstr("num_mc_samples must be even"));
  c = minimal();
  c["loss"]["StochasticSegmentationNetworkLossMCIntegral"]["all_samples_weight"] = -0.5;
  EXPECT_THAT(error_of(c), HasSubstr("all_samples_weight must be a finite number >= 0, got -0.5"));
  c = minimal();
  c["valid"] = {{"calibration_samples", 1}};
  EXPECT_THAT(error_of(c), HasSubstr("calibration_samples"));
  c = minimal();
  c["valid"] = {{"calibrate", "yes"}};
  EXPECT_THAT(error_of(c), HasSubstr("calibrate"));
  c = minimal();
  c["valid"] = {{"calibration_band_reference", "test"}};
  EXPECT_THAT(error_of(c), HasSubstr("valid.calibration_band_reference must be \"train_and_val\" "
                                     "or \"val\", got \"test\""));
  c["valid"] = {{"calibration_band_reference", "val"}};
  EXPECT_FALSE(parse_config(c, "cfg.json").valid.calibration_band_on_train_and_val);
  EXPECT_TRUE(parse_config(minimal(), "cfg.json").valid.calibration_band_on_train_and_val);
  EXPECT_THAT(error_of(json::object()), HasSubstr("model must hold exactly one named entry"));
}

}  // namespace
}  // namespace ssn::config

namespace ssn::config {
namespace {

// Patch augmentation axes are spatial and 0-based (the reference's convention): in 3-D, 0..2.
TEST(Config, PatchAugmentationAxesOutOfRangeAreRefused) {
  const auto with = [](const std::string& augmentation) {
    return nlohmann::json::parse(R"({"model": {"StochasticUNet": {"dimensions": 3}},
      "training": {"patch_augmentation": )" +
                                 augmentation + "}}");
  };
  EXPECT_NO_THROW(parse_config(with(R"({"RandomPatchRotation": {"prob": 0.5,
      "allowed_planes": [[2, 1], [0, 2]]}, "RandomPatchFlip": {"prob": 0.5, "allowed_axis": [0, 2]}})")));
  EXPECT_THAT(
      error_of(with(R"({"RandomPatchRotation": {"prob": 0.5, "allowed_planes": [[2, 3]]}})")),
      HasSubstr("RandomPatchRotation.allowed_planes: expected pairs of different spatial "
                "axes in 0..2 (0 = the first voxel axis), got [2,3]"));
  EXPECT_THAT(
      error_of(with(R"({"RandomPatchRotation": {"prob": 0.5, "allowed_planes": [[1, 1]]}})")),
      HasSubstr("got [1,1]"));
  EXPECT_THAT(
      error_of(with(R"({"RandomPatchFlip": {"prob": 0.5, "allowed_axis": [3]}})")),
      HasSubstr("RandomPatchFlip.allowed_axis: expected spatial axes in 0..2 (0 = the first "
                "voxel axis), got 3"));
  EXPECT_THAT(error_of(with(R"({"RandomPatchFlip": {"prob": 1.5, "allowed_axis": [0]}})")),
              HasSubstr("RandomPatchFlip.prob must be in [0, 1], got 1.5"));
}

// The reference's own BraTS configs, unchanged (the project's copy in tests/data/reference).
TEST(Config, AcceptsTheReferenceBratsConfigsUnchanged) {
  const std::string reference = std::string(SSN_SOURCE_DIR) + "/tests/data/reference/";
  const Config ssn = load_config(reference + "rank_10_mc_20_patch_110.json");
  EXPECT_EQ(ssn.model.name, "StochasticDeepMedic");
  EXPECT_EQ(ssn.model.backbone, Backbone::kDeepMedic);
  EXPECT_EQ(ssn.model.dimensions, 3);
  EXPECT_EQ(ssn.model.kind, nn::ModelKind::kLowRank);
  EXPECT_EQ(ssn.model.rank, 10);
  EXPECT_EQ(ssn.model.feature_maps, (std::vector<int64_t>{30, 30, 40, 40, 40, 40, 50, 50}));
  EXPECT_EQ(ssn.model.fully_connected, (std::vector<int64_t>{250, 250}));
  EXPECT_EQ(ssn.data.dataset, Dataset::kCsv);
  EXPECT_EQ(ssn.data.channels, (std::vector<std::string>{"flair", "t1", "t1ce", "t2"}));
  EXPECT_EQ(ssn.data.target, "seg");
  EXPECT_EQ(ssn.data.sampling_mask, "sampling_mask");
  EXPECT_EQ(ssn.training.input_patch_size, (std::vector<int64_t>{110, 110, 110}));
  EXPECT_EQ(ssn.training.patches_per_image, 20);
  EXPECT_EQ(ssn.training.images_per_epoch, 50);
  EXPECT_DOUBLE_EQ(ssn.training.foreground_probability, 0.5);
  EXPECT_EQ(ssn.training.flip_axes, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(ssn.training.rotation_planes, (std::vector<std::vector<int64_t>>{{2, 1}}));
  EXPECT_DOUBLE_EQ(ssn.training.elastic_probability, 0.5);
  EXPECT_EQ(ssn.training.elastic_period, (std::vector<int64_t>{5, 5, 5}));
  EXPECT_DOUBLE_EQ(ssn.training.elastic_alpha, 20.0);
  EXPECT_EQ(ssn.training.elastic_noise_shape, (std::vector<int64_t>{400, 400, 400}));
  EXPECT_EQ(ssn.loss.num_mc_samples, 20);
  EXPECT_EQ(ssn.optimizer.kind, Optimizer::kRMSprop);
  EXPECT_DOUBLE_EQ(ssn.optimizer.alpha, 0.9);
  EXPECT_DOUBLE_EQ(ssn.optimizer.momentum, 0.6);
  EXPECT_EQ(ssn.scheduler.milestones, (std::vector<int64_t>{440, 640, 800, 900, 980, 1050}));
  const Config benchmark = load_config(reference + "benchmark.json");
  EXPECT_EQ(benchmark.model.kind, nn::ModelKind::kDeterministic);
  EXPECT_EQ(benchmark.loss.kind, loss::LossKind::kCrossEntropy);
  EXPECT_EQ(benchmark.test.input_patch_size, (std::vector<int64_t>{110, 110, 110}));
}

TEST(Config, ShippedBratsConfigs) {
  const std::string configs = std::string(SSN_SOURCE_DIR) + "/configs/";
  const Config paper = load_config(configs + "brats_deepmedic_rank10.json");
  EXPECT_EQ(paper.model.feature_maps, (std::vector<int64_t>{30, 30, 40, 40, 40, 40, 50, 50}));
  EXPECT_EQ(paper.training.input_patch_size, (std::vector<int64_t>{110, 110, 110}));
  EXPECT_EQ(paper.loss.num_mc_samples, 20);
  EXPECT_EQ(load_config(configs + "brats_small_lowrank.json").model.scale_factors,
            (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(load_config(configs + "brats_small_deterministic.json").model.kind,
            nn::ModelKind::kDeterministic);
}

TEST(Config, CsvDataSectionIsChecked) {
  json c = json::parse(R"({"model": {"DeepMedic": {"input_channels": 2, "num_classes": 3}},
                           "data": {"channels": ["t1", "t2"], "target": "seg",
                                    "transformation": {"Clip": {}}},
                           "loss": {"CrossEntropyLoss": {}}})");
  EXPECT_THAT(error_of(c), HasSubstr("data.transformation: ssn applies no input transformations"));
  c["data"]["transformation"] = json::object();
  c["data"]["channels"] = {"t1"};
  EXPECT_THAT(error_of(c), HasSubstr("data.channels has 1 columns, but the model has 2"));
  c["data"]["channels"] = {"t1", "t2"};
  c["training"] = {{"patch_augmentation", {{"RandomPatchFlip", {{"allowed_axis", {4}}}}}}};
  EXPECT_THAT(error_of(c),
              HasSubstr("RandomPatchFlip.allowed_axis: expected spatial axes in 0..2"));
  c["training"] = {{"sampler", {{"UniformSampler", json::object()}}}};
  EXPECT_THAT(error_of(c), HasSubstr("unknown training.sampler \"UniformSampler\""));
  c.erase("training");
  EXPECT_EQ(error_of(c), "<no error>");
  // The class shares are counted over LIDC annotations; volume training samples patches.
  c["model"]["DeepMedic"]["mean_bias_init"] = "class_frequencies";
  EXPECT_THAT(error_of(c), HasSubstr("cfg.json: model.DeepMedic.mean_bias_init "
                                     "\"class_frequencies\" needs the LIDC layout"));
}

}  // namespace
}  // namespace ssn::config
