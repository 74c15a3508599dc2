#pragma once

// Everything a config builds for training and inference, in one place: the model (with the
// config's initialisation recipe), the optimiser, the learning-rate schedule, the loss and the
// device.

#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

#include "ssn/config/config.h"
#include "ssn/data/lidc.h"
#include "ssn/data/volumes.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/nn/segmentation_model.h"

namespace ssn::train {

/// The model a config describes, with the config's initialisation recipe applied
/// (model.log_diag_bias, model.factor_init_scale).
nn::SegmentationModel build_model(const config::ModelConfig& config);

/// Sets the bias of the (mean) logits' convolution to log(frequency) of each class
/// (model.mean_bias_init "class_frequencies"): softmax of the bias is then the classes' shares. A
/// class that never occurs counts as 1e-6 of the pixels, so that its bias stays finite. Returns
/// the bias set.
std::vector<double> init_mean_bias(nn::SegmentationModelImpl& model,
                                   const std::vector<double>& frequencies);

/// Gives `model` the config's training.precision after checking that `device` can run it
/// (runtime::check_precision_supported: a clear error, never a silent fallback).
void apply_precision(nn::SegmentationModelImpl& model, const config::Config& config,
                     const torch::Device& device);

/// Every convolution weight of `model` from TensorFlow 1's He-normal initialiser (a normal of
/// standard deviation sqrt(1.3 * 2 / fan_in) truncated at two standard deviations), its bias 0:
/// PHiSeg's initialisation (config key "init": "he_normal").
void he_normal_init(torch::nn::Module& model);

/// The optimiser of the config's optimizer section over `model`'s parameters: one parameter
/// group, or two where covariance_lr_factor is not 1 and the model has an SSN head (every other
/// parameter, then the head's covariance layers, at lr and lr * covariance_lr_factor).
std::unique_ptr<torch::optim::Optimizer> build_optimizer(const config::OptimizerConfig& config,
                                                         nn::SegmentationModelImpl& model);

/// The rate of epoch `epoch` (0-based). MultiStepLR: the initial rate times gamma for every
/// milestone <= epoch; CosineAnnealingLR: PyTorch's closed form (SchedulerConfig::t_max).
double learning_rate(const config::OptimizerConfig& optimizer,
                     const config::SchedulerConfig& scheduler, int64_t epoch);

/// Sets the learning rate of build_optimizer's groups: lr, and lr * covariance_lr_factor for the
/// covariance layers' group where there is one.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr,
                       const config::OptimizerConfig& config);

/// The loss of the config's loss section.
loss::SegmentationLoss build_loss(const config::LossConfig& config);

/// The LIDC crops reader's options of a config's data section.
data::LidcOptions lidc_options(const config::DataConfig& config);

/// The CSV columns of a config's data section (csv datasets).
data::CsvColumns csv_columns(const config::DataConfig& config);

/// A rough upper estimate of the memory one training step of `config` takes, in bytes: the
/// backbone's activations (batch x input voxels x twice the widest layer, float32, kept for the
/// backward pass, times the number of levels for a U-Net), the head's maps (C x (R + 2) per output
/// voxel) and the SSN loss's working set (M samples of the logits, a quarter at a time, with
/// gradients). `input_voxels` and `output_voxels` are per example.
int64_t estimate_step_bytes(const config::Config& config, const nn::BackboneImpl& backbone,
                            int64_t input_voxels, int64_t output_voxels);

/// Refuses, before the model is built, a covariance head whose weights (C x R x F, with gradients
/// and optimiser state) exceed the memory available (MemAvailable), naming the rank.
void check_model_fits_in_memory(const config::ModelConfig& model);

/// Refuses, before anything is allocated, a step whose estimate exceeds the memory available to
/// the process (MemAvailable): the error gives the estimate and the settings behind it.
void check_step_fits_in_memory(const config::Config& config, const nn::BackboneImpl& backbone,
                               int64_t input_voxels, int64_t output_voxels);

/// The device named `name` ("cpu", "cuda", "cuda:1"); an error when it names CUDA and this
/// LibTorch build has no usable CUDA device.
torch::Device checked_device(const std::string& name);

}  // namespace ssn::train
