#include "ssn/metrics/metrics.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace ssn::metrics {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kNccEpsilon = 1e-8;  // PHiSeg's pixel_wise_xent

void check_label_pair(const at::Tensor& samples, const at::Tensor& annotations) {
  TORCH_CHECK(samples.defined() && samples.dim() >= 2 && samples.size(0) >= 1,
              "metrics: samples must have shape [N >= 1, *spatial], got ",
              samples.defined() ? samples.sizes() : at::IntArrayRef{});
  TORCH_CHECK(annotations.defined() && annotations.dim() >= 2 && annotations.size(0) >= 1,
              "metrics: annotations must have shape [M >= 1, *spatial], got ",
              annotations.defined() ? annotations.sizes() : at::IntArrayRef{});
  TORCH_CHECK(samples.sizes().slice(1) == annotations.sizes().slice(1),
              "metrics: samples and annotations must have the same spatial shape, got ",
              samples.sizes().slice(1), " and ", annotations.sizes().slice(1));
}

}  // namespace

DistributionMetrics distribution_metrics(const at::Tensor& samples, const at::Tensor& annotations,
                                         int64_t num_classes) {
  check_label_pair(samples, annotations);
  const auto channels = foreground_classes(num_classes);
  return distribution_metrics(PackedLabels(samples, num_classes, channels),
                              PackedLabels(annotations, num_classes, channels));
}

DistributionMetrics distribution_metrics(const PackedLabels& samples,
                                         const PackedLabels& annotations, bool with_hm_iou) {
  TORCH_CHECK(samples.num_maps() >= 1 && annotations.num_maps() >= 1,
              "metrics: need at least one sample and one annotation, got ", samples.num_maps(),
              " and ", annotations.num_maps());
  const at::Tensor d_ss = iou_distance(pairwise_overlap(samples, samples, /*symmetric=*/true));
  const at::Tensor d_sy = iou_distance(pairwise_overlap(samples, annotations));
  const at::Tensor d_yy =
      iou_distance(pairwise_overlap(annotations, annotations, /*symmetric=*/true));
  DistributionMetrics result;
  result.diversity = d_ss.mean().item<double>();
  result.annotator_diversity = d_yy.mean().item<double>();
  result.ged = 2 * d_sy.mean().item<double>() - result.diversity - result.annotator_diversity;
  const int64_t n = samples.num_maps();
  const int64_t m = annotations.num_maps();
  if (!with_hm_iou || n % m != 0) {
    result.hm_iou = kNaN;
  } else {
    // Column j of the tiled annotations is annotation j % M.
    const at::Tensor cost = d_sy.repeat({1, n / m});
    result.hm_iou = 1.0 - min_cost_assignment(cost) / static_cast<double>(n);
  }
  return result;
}

double min_cost_assignment(const at::Tensor& cost, std::vector<int64_t>* assignment) {
  TORCH_CHECK(cost.dim() == 2 && cost.size(0) == cost.size(1),
              "min_cost_assignment: expected a square cost matrix, got ", cost.sizes());
  const int64_t n = cost.size(0);
  const at::Tensor c = cost.to(at::kDouble).contiguous();
  const double* a = c.data_ptr<double>();
  // Potentials u (rows), v (columns); match[j] = row matched to column j (1-based, 0 = none).
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0.0), v(n + 1, 0.0), min_to(n + 1);
  std::vector<int64_t> match(n + 1, 0), way(n + 1, 0);
  std::vector<char> used(n + 1);
  for (int64_t row = 1; row <= n; ++row) {
    match[0] = row;
    int64_t col0 = 0;
    std::fill(min_to.begin(), min_to.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[col0] = 1;
      const int64_t i0 = match[col0];
      double delta = inf;
      int64_t col1 = 0;
      for (int64_t j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double reduced = a[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
        if (reduced < min_to[j]) {
          min_to[j] = reduced;
          way[j] = col0;
        }
        if (min_to[j] < delta) {
          delta = min_to[j];
          col1 = j;
        }
      }
      for (int64_t j = 0; j <= n; ++j) {
        if (used[j]) {
          u[match[j]] += delta;
          v[j] -= delta;
        } else {
          min_to[j] -= delta;
        }
      }
      col0 = col1;
    } while (match[col0] != 0);
    do {
      const int64_t col1 = way[col0];
      match[col0] = match[col1];
      col0 = col1;
    } while (col0 != 0);
  }
  double total = 0.0;
  if (assignment) assignment->assign(static_cast<size_t>(n), -1);
  for (int64_t j = 1; j <= n; ++j) {
    total += a[(match[j] - 1) * n + (j - 1)];
    if (assignment) (*assignment)[match[j] - 1] = j - 1;
  }
  return total;
}

double variance_ncc(const at::Tensor& sample_probabilities, const at::Tensor& annotations) {
  TORCH_CHECK(sample_probabilities.dim() >= 3,
              "variance_ncc: sample_probabilities must have shape [N, C, *spatial], got ",
              sample_probabilities.sizes());
  const at::Tensor p = sample_probabilities.to(at::kDouble);
  return variance_ncc_from_moments(p.mean(/*dim=*/0), (p + kNccEpsilon).log().mean(/*dim=*/0),
                                   annotations);
}

double variance_ncc_of_labels(const at::Tensor& samples, const at::Tensor& annotations,
                              int64_t num_classes) {
  return variance_ncc_of_frequencies(class_frequencies(samples, num_classes), annotations);
}

double variance_ncc_of_frequencies(const at::Tensor& frequencies, const at::Tensor& annotations) {
  // One-hot samples: log(p + eps) is log(1 + eps) where a sample has class c and log(eps)
  // elsewhere, so its mean over samples is affine in the class frequency.
  const at::Tensor mean_log =
      frequencies * std::log1p(kNccEpsilon) + (1.0 - frequencies) * std::log(kNccEpsilon);
  return variance_ncc_from_moments(frequencies, mean_log, annotations);
}

double variance_ncc_from_moments(const at::Tensor& mean_probabilities,
                                 const at::Tensor& mean_log_probabilities,
                                 const at::Tensor& annotations) {
  TORCH_CHECK(
      mean_probabilities.dim() >= 2 && mean_log_probabilities.sizes() == mean_probabilities.sizes(),
      "variance_ncc: expected moments [C, *spatial], got ", mean_probabilities.sizes(), " and ",
      mean_log_probabilities.sizes());
  TORCH_CHECK(
      annotations.dim() >= 2 && annotations.sizes().slice(1) == mean_probabilities.sizes().slice(1),
      "variance_ncc: annotations must have shape [M, *spatial] with spatial shape ",
      mean_probabilities.sizes().slice(1), ", got ", annotations.sizes());
  const int64_t classes = mean_probabilities.size(0);
  const at::Tensor mean_log = mean_log_probabilities.to(at::kDouble).flatten(1);  // [C, S]
  const at::Tensor mean_seg = mean_probabilities.to(at::kDouble).flatten(1);      // [C, S]
  // E_s[CE(s, mean)] and E_s[CE(s, y_j)] are linear in E_s[log(p_s + eps)].
  const at::Tensor e_ss = -(mean_seg * mean_log).sum(/*dim=*/0);   // [S]
  const at::Tensor labels = annotations.to(at::kLong).flatten(1);  // [M, S]
  TORCH_CHECK(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < classes,
              "variance_ncc: annotation labels must lie in [0, ", classes, ")");
  auto normalise = [](const at::Tensor& x) { return (x - x.mean()) / x.std(/*unbiased=*/false); };
  const at::Tensor a = normalise(e_ss) / static_cast<double>(e_ss.numel());
  double total = 0.0;
  for (int64_t j = 0; j < labels.size(0); ++j) {
    const at::Tensor e_sy = -mean_log.gather(0, labels[j].unsqueeze(0)).squeeze(0);  // [S]
    total += (a * normalise(e_sy)).sum().item<double>();
  }
  return total / static_cast<double>(labels.size(0));
}

double classwise_ece(const at::Tensor& probabilities, const at::Tensor& annotations, int64_t bins) {
  TORCH_CHECK(bins >= 1, "classwise_ece: bins must be >= 1, got ", bins);
  TORCH_CHECK(probabilities.dim() >= 2 && annotations.dim() >= 2 &&
                  probabilities.sizes().slice(1) == annotations.sizes().slice(1),
              "classwise_ece: expected probabilities [C, *spatial] and annotations [M, *spatial] "
              "with the same spatial shape, got ",
              probabilities.sizes(), " and ", annotations.sizes());
  const int64_t classes = probabilities.size(0);
  const at::Tensor conf = probabilities.to(at::kDouble).reshape({classes, -1}).contiguous();
  const at::Tensor labels =
      annotations.to(at::kLong).reshape({annotations.size(0), -1}).contiguous();
  const int64_t pixels = conf.size(1);
  const int64_t raters = labels.size(0);
  TORCH_CHECK(labels.numel() == 0 ||
                  (labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < classes),
              "classwise_ece: annotation labels must lie in [0, ", classes, ")");
  const double* confidence = conf.data_ptr<double>();
  const int64_t* label = labels.data_ptr<int64_t>();
  // Per class and bin: sum of confidences minus sum of accuracies (fraction of annotations that
  // give the pixel this class); ECE_c = sum_b |difference_b| / S.
  std::vector<double> difference(static_cast<size_t>(classes * bins), 0.0);
  std::vector<int64_t> votes(static_cast<size_t>(classes));
  for (int64_t s = 0; s < pixels; ++s) {
    std::fill(votes.begin(), votes.end(), 0);
    for (int64_t m = 0; m < raters; ++m) ++votes[label[m * pixels + s]];
    for (int64_t c = 0; c < classes; ++c) {
      const double p = confidence[c * pixels + s];
      const int64_t bin =
          std::clamp<int64_t>(static_cast<int64_t>(std::floor(p * bins)), 0, bins - 1);
      difference[c * bins + bin] += p - static_cast<double>(votes[c]) / static_cast<double>(raters);
    }
  }
  double total = 0.0;
  for (double d : difference) total += std::abs(d);
  return total / static_cast<double>(pixels) / static_cast<double>(classes);
}

at::Tensor class_frequencies(const at::Tensor& samples, int64_t num_classes) {
  TORCH_CHECK(samples.dim() >= 2 && samples.size(0) >= 1,
              "class_frequencies: samples must have shape [N >= 1, *spatial], got ",
              samples.sizes());
  TORCH_CHECK(num_classes >= 1 && num_classes <= 256,
              "class_frequencies: num_classes must be in [1, 256], got ", num_classes);
  const int64_t maps = samples.size(0);
  const int64_t pixels = samples.numel() / maps;
  at::Tensor labels = samples.reshape({maps, pixels}).cpu();
  const int64_t low = labels.min().item<int64_t>();
  const int64_t high = labels.max().item<int64_t>();
  TORCH_CHECK(low >= 0 && high < num_classes, "class_frequencies: labels must lie in [0, ",
              num_classes, "), got values in [", low, ", ", high, "]");
  labels = labels.to(at::kByte).contiguous();
  // Per block of pixels and class, add up (label == c) over the maps: byte compares the compiler
  // vectorises, into counters that stay in cache.
  at::Tensor counts = at::zeros({num_classes, pixels}, at::kInt);
  const uint8_t* source = labels.data_ptr<uint8_t>();
  int32_t* count = counts.data_ptr<int32_t>();
  at::parallel_for(0, pixels, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t c = 0; c < num_classes; ++c) {
      int32_t* out = count + c * pixels;
      const auto label = static_cast<uint8_t>(c);
      for (int64_t m = 0; m < maps; ++m) {
        const uint8_t* row = source + m * pixels;
        for (int64_t s = begin; s < end; ++s) out[s] += row[s] == label;
      }
    }
  });
  std::vector<int64_t> shape = {num_classes};
  shape.insert(shape.end(), samples.sizes().begin() + 1, samples.sizes().end());
  return (counts.to(at::kDouble) / static_cast<double>(maps)).reshape(shape);
}

at::Tensor entropy_map(const at::Tensor& samples, int64_t num_classes) {
  const at::Tensor p = class_frequencies(samples, num_classes);
  return -(p * p.clamp_min(1e-300).log()).sum(/*dim=*/0);  // 0 log 0 = 0
}

}  // namespace ssn::metrics
