#include "ssn/train/training_data.h"

#include "ssn/metrics/metrics.h"

namespace ssn::train {

std::vector<double> TrainingData::class_frequencies(int64_t /*num_classes*/) const {
  TORCH_CHECK(false,
              "model.mean_bias_init \"class_frequencies\": this data source does not count its "
              "classes (the LIDC layout does)");
  return {};
}

std::unique_ptr<TrainingData> make_training_data(const config::Config& config,
                                                 const DataPaths& paths,
                                                 const nn::BackboneImpl& backbone) {
  switch (config.data.dataset) {
    case config::Dataset::kCsv:
      TORCH_CHECK(!paths.train_csv.empty() && !paths.valid_csv.empty(),
                  "the config's data section describes CSV-indexed volumes: give --train-csv-path "
                  "and --valid-csv-path");
      return make_volume_training_data(config, paths.train_csv, paths.valid_csv, backbone);
    case config::Dataset::kLidc:
      break;
  }
  TORCH_CHECK(config.model.dimensions == 2,
              "the LIDC crops layout (--data-dir) is 2-D, but the model has ",
              config.model.dimensions, " spatial dimensions");
  TORCH_CHECK(!paths.data_dir.empty(),
              "the config's data section describes the LIDC crops layout: give --data-dir");
  return make_lidc_training_data(config, paths.data_dir);
}

Validation score_output(const nn::ModelOutput& out, const at::Tensor& targets,
                        const std::vector<at::Tensor>& annotations, const config::Config& config,
                        const loss::SegmentationLoss& loss_fn, at::Generator& generator) {
  Validation result;
  const LowRankNormal* distribution = out.stochastic ? &out.stochastic->distribution : nullptr;
  at::Tensor samples;  // [B, N, *spatial]
  const int64_t batch = out.mean_logits.size(0);
  if (distribution != nullptr) {
    const LowRankNormal on_cpu(distribution->loc().cpu(), distribution->cov_factor().cpu(),
                               distribution->cov_diag().cpu(), distribution->event_shape());
    result.loss +=
        loss_fn(out.mean_logits.cpu(), &on_cpu, targets.cpu(), generator).item<double>() * batch;
    samples =
        class_argmax(on_cpu.to_event_shape(on_cpu.rsample(config.valid.num_samples, generator)), 2)
            .transpose(0, 1);
  } else {
    result.loss += loss_fn(out.mean_logits.cpu(), nullptr, targets.cpu()).item<double>() * batch;
    samples = out.mean_logits.cpu().argmax(/*dim=*/1).unsqueeze(1);
  }
  for (int64_t b = 0; b < batch; ++b) {
    result.ged +=
        metrics::distribution_metrics(samples[b], annotations[b], config.model.num_classes).ged;
  }
  return result;
}

nn::ModelOutput example_output(const nn::ModelOutput& out, int64_t b) {
  nn::ModelOutput one;
  one.mean_logits = out.mean_logits.narrow(0, b, 1);
  if (out.stochastic) {
    const nn::HeadOutput& head = *out.stochastic;
    const LowRankNormal& d = head.distribution;
    one.stochastic =
        nn::HeadOutput{LowRankNormal(d.loc().narrow(0, b, 1), d.cov_factor().narrow(0, b, 1),
                                     d.cov_diag().narrow(0, b, 1), d.event_shape()),
                       head.mean_logits.narrow(0, b, 1), head.cov_diag.narrow(0, b, 1),
                       head.cov_factor.narrow(0, b, 1)};
  }
  return one;
}

Validation score_batch(nn::SegmentationModel& model, const at::Tensor& images,
                       const at::Tensor& targets, const at::Tensor& masks,
                       const std::vector<at::Tensor>& annotations, const config::Config& config,
                       const loss::SegmentationLoss& loss_fn, torch::Device device,
                       at::Generator& generator) {
  const nn::ModelOutput out =
      model->forward(images.to(device), masks.defined() ? masks.to(device) : masks);
  return score_output(out, targets, annotations, config, loss_fn, generator);
}

}  // namespace ssn::train
