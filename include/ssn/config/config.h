#pragma once

// JSON config (the reference's schema: sections model / data / training / valid / loss / optimizer
// / scheduler, each named object holding its options) -> Options structs, validated in one place.
// Unknown keys and wrong types are errors that name the key and its path.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ssn/loss/segmentation_loss.h"
#include "ssn/nn/segmentation_model.h"
#include "ssn/nn/unet.h"
#include "ssn/runtime/precision.h"

namespace ssn::config {

enum class Backbone { kUNet, kDeepMedic };

/// The layout of the data: the LIDC crops layout (--data-dir) or the reference's NIfTI CSV index
/// (--train-csv-path ...).
enum class Dataset { kLidc, kCsv };

enum class Optimizer { kAdam, kRMSprop, kSGD };

/// What checkpoint_best.pt minimises over the validated epochs after the mean-only warm-up.
enum class BestCriterion { kValLoss, kValGed };

/// "lidc" | "csv".
std::string to_string(Dataset dataset);
/// "Adam" | "RMSprop" | "SGD", as in the config.
std::string to_string(Optimizer optimizer);
/// "val_loss" | "val_ged", as in the config.
std::string to_string(BestCriterion criterion);
/// "StochasticSegmentationNetworkLossMCIntegral" | "CrossEntropyLoss", as in the config.
std::string to_string(loss::LossKind loss);

struct ModelConfig {
  /// "UNet" / "DeepMedic" (deterministic) or "StochasticUNet" / "StochasticDeepMedic" (rank 0 =
  /// diagonal).
  std::string name = "StochasticUNet";
  Backbone backbone = Backbone::kUNet;
  /// 2 or 3 spatial axes ("dimensions"; default 2 for U-Nets, 3 for DeepMedic).
  int64_t dimensions = 2;
  nn::ModelKind kind = nn::ModelKind::kLowRank;
  int64_t input_channels = 1;
  int64_t num_classes = 2;
  int64_t rank = 10;
  double epsilon = 1e-5;
  std::vector<int64_t> filters = {32, 64, 128, 192, 192, 192, 192};
  int64_t convs_per_level = 3;
  nn::Normalisation normalisation = nn::Normalisation::kBatch;
  /// U-Net variants (nn::UNetOptions): "pooling", "upsampling", "decoder_widths",
  /// "recombination", "batch_norm_epsilon", "batch_norm_momentum".
  nn::Pooling pooling = nn::Pooling::kMax;
  nn::Upsampling upsampling = nn::Upsampling::kLinear;
  nn::DecoderWidths decoder_widths = nn::DecoderWidths::kLevel;
  std::vector<int64_t> recombination;
  double batch_norm_epsilon = 1e-5;
  double batch_norm_momentum = 0.1;
  /// "init": LibTorch's default initialisation, or "he_normal": every convolution's weights from
  /// TensorFlow 1's variance_scaling_initializer(2.0, FAN_IN, normal) (a normal of standard
  /// deviation sqrt(1.3 * 2 / fan_in) truncated at 2 standard deviations) and zero biases, as
  /// PHiSeg initialises.
  bool he_normal_init = false;
  /// "mean_bias_init": "default" (the layer's own initialisation) or "class_frequencies": the
  /// bias of the (mean) logits' 1x1 convolution starts at the log of each class's share of the
  /// training annotations' pixels, so that the first steps need not learn how rare the
  /// foreground is (LIDC layout only; set by train::init_mean_bias when a run starts).
  bool mean_bias_from_class_frequencies = false;
  /// Initial bias of the log-diagonal conv: log D starts near this value (the CPU recipe).
  double log_diag_bias = 0.0;
  /// Multiplies the default initial weights of the covariance-factor conv.
  double factor_init_scale = 1.0;
  /// Whether the covariance factor's 1x1 convolution has a bias (the reference's has).
  bool factor_bias = true;
  /// DeepMedic: channels of the 8 convolutional blocks of every pathway.
  std::vector<int64_t> feature_maps = {30, 30, 40, 40, 40, 40, 50, 50};
  /// DeepMedic: channels of the hidden 1x1 blocks after the pathways are joined.
  std::vector<int64_t> fully_connected = {250, 250};
  /// DeepMedic: one pathway per factor (isotropic), strictly decreasing, largest first.
  std::vector<int64_t> scale_factors = {5, 3, 1};
  /// DeepMedic: dropout of the 1x1 blocks (first, ..., last).
  std::vector<double> dropout = {0.0, 0.5, 0.5};
};

struct DataConfig {
  /// "dataset": "lidc" or "csv" (chosen when `channels` is given).
  Dataset dataset = Dataset::kLidc;
  int64_t crop = 128;
  int64_t size = 128;
  int64_t annotators = 4;
  /// LIDC layout: "intensity" "standardise" (per image) or "minus_half" (PHiSeg's: [0, 1] - 0.5),
  /// and the training "augmentation" "flips_and_turns" or "phiseg" (data::LidcAugmentation).
  std::string intensity = "standardise";
  std::string augmentation = "flips_and_turns";
  /// LIDC layout: what an example's training target is: "one_annotator" (drawn at random each
  /// time, as the paper trains) or "all_annotators" (the loss is the mean over every annotator's
  /// mask of its Monte-Carlo likelihood, from the same samples; validation the same).
  std::string train_targets = "one_annotator";
  /// csv: the CSV columns holding the input channels, the target and the sampling mask (empty:
  /// all ones), and the class names (background first).
  std::vector<std::string> channels;
  std::string target = "seg";
  std::string sampling_mask;
  std::vector<std::string> class_names;
};

struct TrainingConfig {
  int64_t batch_size = 12;
  int64_t num_epochs = 100;
  /// Epochs at the start during which only the mean is trained (covariance frozen).
  int64_t mean_only_epochs = 0;
  bool augment = true;
  /// Training stops after this many steps whose loss was NaN or infinite (each is skipped).
  int64_t max_bad_steps = 20;
  /// Exponential moving average of the weights (Polyak averaging), 0: off. After every optimiser
  /// step average = d * average + (1 - d) * weights, floating-point buffers alike, with
  /// d = min(ema_decay, (1 + n) / (10 + n)) after n updates; validation, checkpoint_best.pt,
  /// calibration and prediction use the average (train/trainer.h).
  double ema_decay = 0.0;
  /// The backbone's floating-point type in training and inference ("fp32" | "bf16" | "fp16"):
  /// autocast for the backbone, the SSN head, covariance and loss in float32 (runtime/precision.h).
  /// fp16 scales the loss (GradScaler in train/grad_scaler.h).
  runtime::Precision precision = runtime::Precision::kFp32;
  /// Patch training (csv data): an epoch draws patches_per_image patches from each of
  /// images_per_epoch cases.
  int64_t patches_per_image = 20;
  int64_t images_per_epoch = 50;
  /// Input patch size per spatial axis (empty: the model's smallest valid size).
  std::vector<int64_t> input_patch_size;
  /// ForegroundBackgroundPatchSampler: a patch is centred on the target's foreground with this
  /// probability, trying n_tries centres inside the sampling mask.
  double foreground_probability = 0.5;
  int64_t n_tries = 5;
  /// Cases kept decoded in memory at once; loader threads.
  int64_t max_cases_in_memory = 50;
  int64_t num_workers = 3;
  /// patch_augmentation: RandomPatchFlip (allowed_axis) and RandomPatchRotation (quarter turns in
  /// each plane of allowed_planes), RandomHistogramDeformation. Axes are spatial and count from 0
  /// in the voxel array's order (z, y, x), the reference's convention (it adds 1 for the image's
  /// channel axis): its [[2, 1]] turns the y-x plane. Checked to be in 0..dimensions-1.
  double flip_probability = 0.0;
  std::vector<int64_t> flip_axes;
  double rotation_probability = 0.0;
  std::vector<std::vector<int64_t>> rotation_planes;
  double histogram_probability = 0.0;
  /// augmentation.RandomElasticDeformationCoarsePerlinNoise (data::ElasticOptions): the
  /// probability (0: off), period, alpha and noise_shape; num_maps is read and has no effect (the
  /// reference's maps are all the same field).
  double elastic_probability = 0.0;
  std::vector<int64_t> elastic_period = {5, 5, 5};
  double elastic_alpha = 20.0;
  std::vector<int64_t> elastic_noise_shape = {400, 400, 400};
};

struct ValidConfig {
  int64_t eval_every = 1;    ///< epochs
  int64_t num_cases = 20;    ///< validation cases scored per evaluation
  int64_t num_samples = 16;  ///< samples per case for the validation GED
  /// Patch validation (csv data): patches_per_image patches of images_per_epoch cases.
  int64_t batch_size = 10;
  std::vector<int64_t> input_patch_size;
  int64_t patches_per_image = 40;
  int64_t images_per_epoch = 20;
  int64_t max_cases_in_memory = 20;
  int64_t num_workers = 2;
  /// Keep a copy of the checkpoint every this many epochs (0: never).
  int64_t keep_model_every = 0;
  /// checkpoint_best.pt: the validated epoch after the warm-up with the lowest validation loss
  /// (default: it ranks the calibrated test GED; docs/results.md) or validation GED at T = 1.
  BestCriterion best_criterion = BestCriterion::kValLoss;
  /// At the end of training, fit the sampling temperature (and class weights) of
  /// checkpoint_best.pt on the first num_cases validation cases (evaluation/calibration.h).
  bool calibrate = true;
  /// Samples per case for each calibration setting's GED (evaluate's default, so that the
  /// figures compare).
  int64_t calibration_samples = 100;
  /// The calibration keeps the sample diversity within [1/r, r] times the annotators' on the
  /// validation cases (0: GED alone; evaluation::CalibrationOptions::max_diversity_ratio).
  double calibration_max_diversity_ratio = 1.25;
  /// The calibration prefers settings that draw no whole-image sample on the validation cases
  /// (evaluation::CalibrationOptions::avoid_whole_image).
  bool calibration_avoid_whole_image = true;
  /// What the band's "annotators' diversity" is measured on: true (LIDC layout), the annotations
  /// of every training and validation image, a far less noisy estimate than the 100 validation
  /// cases' own (docs/results.md); false, or CSV-indexed volumes: the validation cases'.
  bool calibration_band_on_train_and_val = true;
};

struct TestConfig {
  /// Full-volume inference: tiles of input_patch_size (empty: the training patch size), batch_size
  /// tiles per forward pass.
  int64_t batch_size = 10;
  std::vector<int64_t> input_patch_size;
  int64_t num_workers = 1;
  /// Test-time mirroring: the mean logits are averaged over the image and its mirror images
  /// along every subset of the spatial axes (4 forward passes in 2-D, 8 in 3-D); the covariance
  /// factor and diagonal are those of the image itself. `ssn predict` and the calibration.
  bool mirror = false;
};

struct LossConfig {
  /// StochasticSegmentationNetworkLossMCIntegral or CrossEntropyLoss.
  loss::LossKind kind = loss::LossKind::kStochasticMcIntegral;
  int64_t num_mc_samples = 20;
  /// Weight of the mean per-sample log-likelihood added to the SSN loss (0: the paper's loss).
  double all_samples_weight = 0.0;
};

struct OptimizerConfig {
  Optimizer kind = Optimizer::kAdam;
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;  ///< SGD, RMSprop
  double alpha = 0.99;    ///< RMSprop smoothing constant
  /// The covariance layers' learning rate (log D's and P's 1x1 convolutions) as a multiple of
  /// lr, in their own parameter group; 1: one group, as the paper.
  double covariance_lr_factor = 1.0;
};

enum class Scheduler { kMultiStepLR, kCosineAnnealingLR };

struct SchedulerConfig {
  Scheduler kind = Scheduler::kMultiStepLR;  ///< no scheduler section: MultiStepLR, no milestones
  std::vector<int64_t> milestones;           ///< MultiStepLR: epochs at which lr *= gamma
  double gamma = 0.1;
  /// CosineAnnealingLR (PyTorch's closed form, stepped once per epoch): after e epochs the rate
  /// is eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2, a cosine of period 2 * T_max.
  int64_t t_max = 0;
  double eta_min = 0.0;
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainingConfig training;
  ValidConfig valid;
  TestConfig test;
  LossConfig loss;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  nlohmann::json source;  ///< the file as read, copied into job folders
};

/// Parses and validates; `origin` names the file in error messages.
Config parse_config(const nlohmann::json& json, const std::string& origin = "config");

/// Reads a JSON file and parses it.
Config load_config(const std::filesystem::path& path);

/// The keys where two configs differ, as JSON pointers ("/model/StochasticUNet/rank"), in order.
std::vector<std::string> differences(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace ssn::config
