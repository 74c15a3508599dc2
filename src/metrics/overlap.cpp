#include "ssn/metrics/overlap.h"

#include <ATen/Parallel.h>

#include <limits>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace ssn::metrics {
namespace {

constexpr int64_t kMaxChannels = 64;

// Bit k of lut[label] says whether `label` belongs to channel k; pixels become one byte each for
// up to 8 channels, else are tested per channel.
std::vector<uint64_t> channel_lut(const std::vector<ClassSet>& channels, int64_t num_classes) {
  std::vector<uint64_t> lut(256, 0);
  for (size_t k = 0; k < channels.size(); ++k) {
    for (int64_t cls : channels[k]) {
      TORCH_CHECK(cls >= 0 && cls < num_classes, "metrics: channel ", k, " names class ", cls,
                  ", expected a class in [0, ", num_classes, ")");
      lut[cls] |= uint64_t{1} << k;
    }
  }
  return lut;
}

// 64 pixels of channel-membership bytes -> one bit mask word, for channel bit `bit` (< 8).
inline uint64_t pack_word(const uint8_t* member, int64_t count, uint8_t bit) {
#if defined(__x86_64__)
  if (count == 64) {
    const __m128i probe = _mm_set1_epi8(static_cast<char>(bit));
    uint64_t word = 0;
    for (int block = 0; block < 4; ++block) {
      const __m128i v =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(member + 16 * block));
      const __m128i hit = _mm_cmpeq_epi8(_mm_and_si128(v, probe), probe);
      word |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(hit))) << (16 * block);
    }
    return word;
  }
#endif
  uint64_t word = 0;
  for (int64_t p = 0; p < count; ++p) {
    word |= static_cast<uint64_t>((member[p] & bit) != 0) << p;
  }
  return word;
}

#if defined(__x86_64__) && defined(__GNUC__)
// One binary for every x86-64: the popcnt clone where the CPU has the instruction.
__attribute__((target_clones("popcnt", "default")))
#endif
int64_t and_popcount(const uint64_t* a, const uint64_t* b, int64_t words) {
  int64_t total = 0;
  for (int64_t w = 0; w < words; ++w) {
    total += __builtin_popcountll(a[w] & b[w]);
  }
  return total;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("popcnt", "default")))
#endif
int64_t popcount(const uint64_t* a, int64_t words) {
  int64_t total = 0;
  for (int64_t w = 0; w < words; ++w) {
    total += __builtin_popcountll(a[w]);
  }
  return total;
}

}  // namespace

std::vector<ClassSet> foreground_classes(int64_t num_classes) {
  std::vector<ClassSet> channels;
  for (int64_t c = 1; c < num_classes; ++c) channels.push_back({c});
  return channels;
}

PackedLabels::PackedLabels(const at::Tensor& labels, int64_t num_classes,
                           std::vector<ClassSet> channels)
    : channels_(std::move(channels)) {
  TORCH_CHECK(num_classes >= 2 && num_classes <= 256,
              "metrics: num_classes must be in [2, 256], got ", num_classes);
  TORCH_CHECK(!channels_.empty() && num_channels() <= kMaxChannels,
              "metrics: between 1 and 64 channels, got ", channels_.size());
  TORCH_CHECK(labels.defined() && labels.dim() >= 2,
              "metrics: label maps must have shape [L, *spatial], got ",
              labels.defined() ? labels.sizes() : at::IntArrayRef{});
  TORCH_CHECK(!at::isFloatingType(labels.scalar_type()),
              "metrics: label maps must hold integer labels, got ", labels.scalar_type());
  num_maps_ = labels.size(0);
  num_pixels_ = num_maps_ ? labels.numel() / num_maps_ : 0;
  words_ = (num_pixels_ + 63) / 64;
  const at::Tensor flat = labels.reshape({num_maps_, num_pixels_}).cpu();
  if (flat.numel() > 0) {
    const int64_t low = flat.min().item<int64_t>();
    const int64_t high = flat.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < num_classes, "metrics: labels must lie in [0, ", num_classes,
                "), got values in [", low, ", ", high, "]");
  }
  const at::Tensor bytes = flat.to(at::kByte).contiguous();
  const std::vector<uint64_t> lut = channel_lut(channels_, num_classes);
  bits_.assign(static_cast<size_t>(num_maps_ * num_channels() * words_), 0);
  sizes_.assign(static_cast<size_t>(num_maps_ * num_channels()), 0);
  const int64_t groups = (num_channels() + 7) / 8;  // channels handled 8 at a time, one byte each
  at::parallel_for(0, num_maps_, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> member(static_cast<size_t>(num_pixels_));
    for (int64_t map = begin; map < end; ++map) {
      const uint8_t* source = bytes.data_ptr<uint8_t>() + map * num_pixels_;
      for (int64_t group = 0; group < groups; ++group) {
        for (int64_t p = 0; p < num_pixels_; ++p) {
          member[p] = static_cast<uint8_t>(lut[source[p]] >> (8 * group));
        }
        const int64_t first = 8 * group;
        const int64_t last = std::min<int64_t>(num_channels(), first + 8);
        for (int64_t channel = first; channel < last; ++channel) {
          uint64_t* out = bits_.data() + (map * num_channels() + channel) * words_;
          const auto bit = static_cast<uint8_t>(1u << (channel - first));
          for (int64_t w = 0; w < words_; ++w) {
            out[w] = pack_word(member.data() + 64 * w, std::min<int64_t>(64, num_pixels_ - 64 * w),
                               bit);
          }
          sizes_[map * num_channels() + channel] = popcount(out, words_);
        }
      }
    }
  });
}

Overlap pairwise_overlap(const PackedLabels& a, const PackedLabels& b, bool symmetric) {
  TORCH_CHECK(a.num_pixels() == b.num_pixels(),
              "metrics: the two sets of label maps differ in size: ", a.num_pixels(), " and ",
              b.num_pixels(), " pixels");
  TORCH_CHECK(a.channels() == b.channels(), "metrics: the two sets were packed with other channels");
  const int64_t channels = a.num_channels();
  Overlap overlap;
  overlap.intersection = at::zeros({a.num_maps(), b.num_maps(), channels}, at::kLong);
  overlap.size_a = at::empty({a.num_maps(), channels}, at::kLong);
  overlap.size_b = at::empty({b.num_maps(), channels}, at::kLong);
  int64_t* inter = overlap.intersection.data_ptr<int64_t>();
  for (int64_t i = 0; i < a.num_maps(); ++i)
    for (int64_t k = 0; k < channels; ++k) overlap.size_a[i][k] = a.channel_size(i, k);
  for (int64_t j = 0; j < b.num_maps(); ++j)
    for (int64_t k = 0; k < channels; ++k) overlap.size_b[j][k] = b.channel_size(j, k);
  const int64_t words = a.words_per_mask();
  at::parallel_for(0, a.num_maps(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t j = symmetric ? i : 0; j < b.num_maps(); ++j) {
        for (int64_t k = 0; k < channels; ++k) {
          inter[(i * b.num_maps() + j) * channels + k] =
              and_popcount(a.mask(i, k), b.mask(j, k), words);
        }
      }
    }
  });
  if (symmetric) {
    TORCH_CHECK(a.num_maps() == b.num_maps(), "metrics: a symmetric overlap needs one set");
    for (int64_t i = 0; i < a.num_maps(); ++i)
      for (int64_t j = 0; j < i; ++j)
        for (int64_t k = 0; k < channels; ++k)
          inter[(i * b.num_maps() + j) * channels + k] =
              inter[(j * b.num_maps() + i) * channels + k];
  }
  return overlap;
}

at::Tensor iou_distance(const Overlap& overlap) {
  const at::Tensor inter = overlap.intersection.to(at::kDouble);
  const at::Tensor uni =
      overlap.size_a.unsqueeze(1).to(at::kDouble) + overlap.size_b.unsqueeze(0).to(at::kDouble) -
      inter;
  const at::Tensor iou = at::where(uni > 0, inter / uni.clamp_min(1), at::ones_like(uni));
  return 1.0 - iou.mean(/*dim=*/-1);
}

at::Tensor dice(const Overlap& overlap) {
  const at::Tensor inter = overlap.intersection.to(at::kDouble);
  const at::Tensor total =
      overlap.size_a.unsqueeze(1).to(at::kDouble) + overlap.size_b.unsqueeze(0).to(at::kDouble);
  return at::where(total > 0, 2 * inter / total.clamp_min(1),
                   at::full_like(total, std::numeric_limits<double>::quiet_NaN()));
}

}  // namespace ssn::metrics
