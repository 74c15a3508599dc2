#include "ssn/metrics/overlap.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ssn::metrics {
namespace {

constexpr int64_t kMaxChannels = 64;
// 16 KiB of each mask at a time.
constexpr int64_t kTileWords = 2048;

enum class Simd { kScalar, kSse2, kAvx2 };

// The widest instruction set the CPU has; the environment variable SSN_SIMD=scalar|sse2 can force
// a narrower one (tests run every path on one machine this way).
Simd simd_level() {
  static const Simd level = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    Simd best = __builtin_cpu_supports("avx2") ? Simd::kAvx2 : Simd::kSse2;
#else
    Simd best = Simd::kScalar;
#endif
    const char* forced = std::getenv("SSN_SIMD");
    if (forced != nullptr && std::string(forced) == "scalar") return Simd::kScalar;
    if (forced != nullptr && std::string(forced) == "sse2" && best != Simd::kScalar) {
      return Simd::kSse2;
    }
    return best;
  }();
  return level;
}

// Bit k of lut[label] says whether `label` belongs to channel k (the portable packing path).
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

// Packing one map: out[k * words + w] holds channel k of pixels 64w .. 64w + 63. Each returns the
// largest label it saw (the caller checks it against K).

// Words [first_word, words): the portable path, also the partial last word of the SIMD paths.
uint8_t pack_words_scalar(const uint8_t* labels, int64_t pixels, const std::vector<uint64_t>& lut,
                          int64_t channels, int64_t words, int64_t first_word, uint64_t* out) {
  uint8_t high = 0;
  for (int64_t w = first_word; w < words; ++w) {
    const int64_t count = std::min<int64_t>(64, pixels - 64 * w);
    for (int64_t k = 0; k < channels; ++k) out[k * words + w] = 0;
    for (int64_t p = 0; p < count; ++p) {
      const uint8_t label = labels[64 * w + p];
      high = std::max(high, label);
      const uint64_t member = lut[label];
      for (int64_t k = 0; k < channels; ++k) out[k * words + w] |= ((member >> k) & 1) << p;
    }
  }
  return high;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define SSN_HAVE_SIMD_PACKING 1
// A channel's mask is the OR of byte compares against each of its classes.
uint8_t pack_map_sse2(const uint8_t* labels, int64_t pixels, const std::vector<ClassSet>& channels,
                      const std::vector<uint64_t>& lut, int64_t words, uint64_t* out) {
  const int64_t full = pixels / 64;
  const auto count = static_cast<int64_t>(channels.size());
  __m128i high = _mm_setzero_si128();
  for (int64_t w = 0; w < full; ++w) {
    __m128i v[4];
    for (int b = 0; b < 4; ++b) {
      v[b] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(labels + 64 * w + 16 * b));
      high = _mm_max_epu8(high, v[b]);
    }
    for (int64_t k = 0; k < count; ++k) {
      uint64_t word = 0;
      for (int b = 0; b < 4; ++b) {
        __m128i hit = _mm_setzero_si128();
        for (int64_t cls : channels[k]) {
          hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v[b], _mm_set1_epi8(static_cast<char>(cls))));
        }
        word |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(hit))) << (16 * b);
      }
      out[k * words + w] = word;
    }
  }
  alignas(16) uint8_t lanes[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), high);
  const uint8_t tail = pack_words_scalar(labels, pixels, lut, count, words, full, out);
  return std::max(tail, *std::max_element(lanes, lanes + 16));
}

__attribute__((target("avx2"))) uint8_t pack_map_avx2(const uint8_t* labels, int64_t pixels,
                                                      const std::vector<ClassSet>& channels,
                                                      const std::vector<uint64_t>& lut,
                                                      int64_t words, uint64_t* out) {
  const int64_t full = pixels / 64;
  const auto count = static_cast<int64_t>(channels.size());
  __m256i high = _mm256_setzero_si256();
  for (int64_t w = 0; w < full; ++w) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(labels + 64 * w));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(labels + 64 * w + 32));
    high = _mm256_max_epu8(high, _mm256_max_epu8(v0, v1));
    for (int64_t k = 0; k < count; ++k) {
      __m256i hit0 = _mm256_setzero_si256();
      __m256i hit1 = _mm256_setzero_si256();
      for (int64_t cls : channels[k]) {
        const __m256i probe = _mm256_set1_epi8(static_cast<char>(cls));
        hit0 = _mm256_or_si256(hit0, _mm256_cmpeq_epi8(v0, probe));
        hit1 = _mm256_or_si256(hit1, _mm256_cmpeq_epi8(v1, probe));
      }
      out[k * words + w] =
          static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(hit0))) |
          static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(hit1))) << 32;
    }
  }
  alignas(32) uint8_t lanes[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), high);
  const uint8_t tail = pack_words_scalar(labels, pixels, lut, count, words, full, out);
  return std::max(tail, *std::max_element(lanes, lanes + 32));
}
#endif

uint8_t pack_map(const uint8_t* labels, int64_t pixels, const std::vector<ClassSet>& channels,
                 const std::vector<uint64_t>& lut, int64_t words, uint64_t* out) {
#ifdef SSN_HAVE_SIMD_PACKING
  if (simd_level() == Simd::kAvx2) return pack_map_avx2(labels, pixels, channels, lut, words, out);
  if (simd_level() == Simd::kSse2) return pack_map_sse2(labels, pixels, channels, lut, words, out);
#endif
  return pack_words_scalar(labels, pixels, lut, static_cast<int64_t>(channels.size()), words, 0,
                           out);
}

#if defined(__x86_64__) && defined(__GNUC__)
// One binary for every x86-64: the popcnt clone where the CPU has the instruction. Four
// accumulators break the dependency chain of the additions.
__attribute__((target_clones("popcnt", "default")))
#endif
int64_t
and_popcount_scalar(const uint64_t* a, const uint64_t* b, int64_t words) {
  int64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  int64_t w = 0;
  for (; w + 4 <= words; w += 4) {
    t0 += __builtin_popcountll(a[w] & b[w]);
    t1 += __builtin_popcountll(a[w + 1] & b[w + 1]);
    t2 += __builtin_popcountll(a[w + 2] & b[w + 2]);
    t3 += __builtin_popcountll(a[w + 3] & b[w + 3]);
  }
  for (; w < words; ++w) t0 += __builtin_popcountll(a[w] & b[w]);
  return t0 + t1 + t2 + t3;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define SSN_HAVE_AVX2_POPCOUNT 1
// AVX2: popcount of 256 bits at a time with a nibble lookup table (vpshufb); byte counts are
// summed for up to 31 blocks (31 * 8 < 256) before the horizontal sum (vpsadbw).
__attribute__((target("avx2"))) int64_t and_popcount_avx2(const uint64_t* a, const uint64_t* b,
                                                          int64_t words) {
  const __m256i lookup = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                          2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  __m256i total = _mm256_setzero_si256();
  int64_t w = 0;
  while (w + 4 <= words) {
    __m256i bytes = _mm256_setzero_si256();
    for (int block = 0; block < 31 && w + 4 <= words; ++block, w += 4) {
      const __m256i v =
          _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + w)),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + w)));
      const __m256i low = _mm256_shuffle_epi8(lookup, _mm256_and_si256(v, low_mask));
      const __m256i high =
          _mm256_shuffle_epi8(lookup, _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask));
      bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(low, high));
    }
    total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes, _mm256_setzero_si256()));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), total);
  int64_t result = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; w < words; ++w) result += __builtin_popcountll(a[w] & b[w]);
  return result;
}
#endif

int64_t and_popcount(const uint64_t* a, const uint64_t* b, int64_t words) {
#ifdef SSN_HAVE_AVX2_POPCOUNT
  if (simd_level() == Simd::kAvx2) return and_popcount_avx2(a, b, words);
#endif
  return and_popcount_scalar(a, b, words);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("popcnt", "default")))
#endif
int64_t
popcount(const uint64_t* a, int64_t words) {
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
  at::Tensor bytes = labels.reshape({num_maps_, num_pixels_}).cpu();
  if (bytes.scalar_type() != at::kByte && bytes.numel() > 0) {
    // Narrowing could wrap: check the range before converting.
    const int64_t low = bytes.min().item<int64_t>();
    const int64_t high = bytes.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < num_classes, "metrics: labels must lie in [0, ", num_classes,
                "), got values in [", low, ", ", high, "]");
    bytes = bytes.to(at::kByte);
  }
  bytes = bytes.contiguous();
  const std::vector<uint64_t> lut = channel_lut(channels_, num_classes);
  bits_.assign(static_cast<size_t>(num_maps_ * num_channels() * words_), 0);
  sizes_.assign(static_cast<size_t>(num_maps_ * num_channels()), 0);
  std::vector<uint8_t> max_label(static_cast<size_t>(num_maps_), 0);
  at::parallel_for(0, num_maps_, 1, [&](int64_t begin, int64_t end) {
    for (int64_t map = begin; map < end; ++map) {
      uint64_t* out = bits_.data() + map * num_channels() * words_;
      max_label[map] = pack_map(bytes.data_ptr<uint8_t>() + map * num_pixels_, num_pixels_,
                                channels_, lut, words_, out);
      for (int64_t k = 0; k < num_channels(); ++k) {
        sizes_[map * num_channels() + k] = popcount(out + k * words_, words_);
      }
    }
  });
  const uint8_t high = num_maps_ ? *std::max_element(max_label.begin(), max_label.end()) : 0;
  TORCH_CHECK(high < num_classes, "metrics: labels must lie in [0, ", num_classes,
              "), got values up to ", static_cast<int>(high));
}

Overlap pairwise_overlap(const PackedLabels& a, const PackedLabels& b, bool symmetric) {
  TORCH_CHECK(a.num_pixels() == b.num_pixels(),
              "metrics: the two sets of label maps differ in size: ", a.num_pixels(), " and ",
              b.num_pixels(), " pixels");
  TORCH_CHECK(a.channels() == b.channels(),
              "metrics: the two sets were packed with other channels");
  TORCH_CHECK(!symmetric || &a == &b, "metrics: a symmetric overlap pairs one set with itself");
  const int64_t channels = a.num_channels();
  Overlap overlap;
  overlap.intersection = at::zeros({a.num_maps(), b.num_maps(), channels}, at::kLong);
  overlap.size_a = at::empty({a.num_maps(), channels}, at::kLong);
  overlap.size_b = at::empty({b.num_maps(), channels}, at::kLong);
  int64_t* inter = overlap.intersection.data_ptr<int64_t>();
  for (int64_t i = 0; i < a.num_maps(); ++i)
    for (int64_t k = 0; k < channels; ++k)
      overlap.size_a.data_ptr<int64_t>()[i * channels + k] = a.channel_size(i, k);
  for (int64_t j = 0; j < b.num_maps(); ++j)
    for (int64_t k = 0; k < channels; ++k)
      overlap.size_b.data_ptr<int64_t>()[j * channels + k] = b.channel_size(j, k);
  const int64_t words = a.words_per_mask();
  // One work item per pair, so the triangle of a symmetric pass splits evenly across threads.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < a.num_maps(); ++i)
    for (int64_t j = symmetric ? i : 0; j < b.num_maps(); ++j) pairs.emplace_back(i, j);
  // Each thread takes a range of pairs and walks the masks tile by tile, so the tile of every map
  // it touches stays in cache across its pairs: the pass is bound by popcount, not by memory
  // bandwidth, even for volumes whose masks are megabytes.
  at::parallel_for(0, static_cast<int64_t>(pairs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t start = 0; start < words; start += kTileWords) {
      const int64_t length = std::min(kTileWords, words - start);
      for (int64_t p = begin; p < end; ++p) {
        const auto [i, j] = pairs[p];
        for (int64_t k = 0; k < channels; ++k) {
          inter[(i * b.num_maps() + j) * channels + k] +=
              and_popcount(a.mask(i, k) + start, b.mask(j, k) + start, length);
        }
      }
    }
  });
  if (symmetric) {
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
  const at::Tensor uni = overlap.size_a.unsqueeze(1).to(at::kDouble) +
                         overlap.size_b.unsqueeze(0).to(at::kDouble) - inter;
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
