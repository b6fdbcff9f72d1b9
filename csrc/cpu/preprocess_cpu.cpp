// CPU implementations of the preprocessing ops: one pass over each frame
// (pair), parallel over frames.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "parallel.h"
#include "../preprocess_checks.h"
#include "../preprocess_layout.h"

namespace dqnfast {
namespace {

// Gray of the element-wise max of two RGB rows (b may be null: one row).
void gray_row_portable(const uint8_t* a, const uint8_t* b, int64_t width, uint8_t* gray) {
  constexpr int32_t half = 1 << (kGrayShift - 1);
  for (int64_t x = 0; x < width; ++x) {
    const int32_t r = b ? std::max(a[3 * x], b[3 * x]) : a[3 * x];
    const int32_t g = b ? std::max(a[3 * x + 1], b[3 * x + 1]) : a[3 * x + 1];
    const int32_t bl = b ? std::max(a[3 * x + 2], b[3 * x + 2]) : a[3 * x + 2];
    gray[x] = static_cast<uint8_t>((r * kGrayR + g * kGrayG + bl * kGrayB + half) >> kGrayShift);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// Byte shuffles that pull channel c of 16 RGB pixels out of their three
// 16-byte loads v (index 0x80 zeroes a byte).
struct ChannelShuffles {
  __m128i of[3][3];  // [channel][load]
  ChannelShuffles() {
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < 3; ++v) {
        alignas(16) int8_t index[16];
        for (int p = 0; p < 16; ++p) {
          const int byte = 3 * p + c - 16 * v;
          index[p] = static_cast<int8_t>(byte >= 0 && byte < 16 ? byte : 0x80);
        }
        of[c][v] = _mm_load_si128(reinterpret_cast<const __m128i*>(index));
      }
  }
};

// The same arithmetic as gray_row_portable, 16 pixels at a time: the same
// fixed-point weights through 32-bit multiply-adds, so bit-identical.
__attribute__((target("avx2"))) void gray_row_avx2(const uint8_t* a, const uint8_t* b,
                                                   int64_t width, uint8_t* gray) {
  static const ChannelShuffles shuffles;
  const __m256i weights_rg = _mm256_set1_epi32((kGrayG << 16) | kGrayR);
  const __m256i weights_b_half = _mm256_set1_epi32(((1 << (kGrayShift - 1)) << 16) | kGrayB);
  const __m256i ones = _mm256_set1_epi16(1);
  int64_t x = 0;
  for (; x + 16 <= width; x += 16) {
    __m128i loads[3];
    for (int i = 0; i < 3; ++i) {
      const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 3 * x + 16 * i));
      loads[i] = b ? _mm_max_epu8(va, _mm_loadu_si128(reinterpret_cast<const __m128i*>(
                                          b + 3 * x + 16 * i)))
                   : va;
    }
    __m256i channel[3];
    for (int c = 0; c < 3; ++c)
      channel[c] = _mm256_cvtepu8_epi16(
          _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(loads[0], shuffles.of[c][0]),
                                    _mm_shuffle_epi8(loads[1], shuffles.of[c][1])),
                       _mm_shuffle_epi8(loads[2], shuffles.of[c][2])));
    // (r, g) and (b, 1) word pairs times (wr, wg) and (wb, half): 32-bit sums.
    const __m256i low = _mm256_add_epi32(
        _mm256_madd_epi16(_mm256_unpacklo_epi16(channel[0], channel[1]), weights_rg),
        _mm256_madd_epi16(_mm256_unpacklo_epi16(channel[2], ones), weights_b_half));
    const __m256i high = _mm256_add_epi32(
        _mm256_madd_epi16(_mm256_unpackhi_epi16(channel[0], channel[1]), weights_rg),
        _mm256_madd_epi16(_mm256_unpackhi_epi16(channel[2], ones), weights_b_half));
    // unpacklo/hi and packus work per 128-bit lane, so the pixel order comes back.
    const __m256i words = _mm256_packus_epi32(_mm256_srli_epi32(low, kGrayShift),
                                              _mm256_srli_epi32(high, kGrayShift));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(gray + x),
                     _mm_packus_epi16(_mm256_castsi256_si128(words),
                                      _mm256_extracti128_si256(words, 1)));
  }
  // Clear the upper halves of the vector registers before the SSE code that follows
  // (the compiler left it out here): dirty ones slow every SSE instruction after.
  _mm256_zeroupper();
  gray_row_portable(a + 3 * x, b ? b + 3 * x : nullptr, width - x, gray + x);
}
#endif

using GrayRow = void (*)(const uint8_t*, const uint8_t*, int64_t, uint8_t*);

// Gray of the element-wise max of two planar RGB rows (channel planes `plane`
// bytes apart); contiguous per channel, so the compiler vectorizes it.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
void gray_row_planar(const uint8_t* a, const uint8_t* b, int64_t plane, int64_t width,
                     uint8_t* gray) {
  constexpr int32_t half = 1 << (kGrayShift - 1);
  const uint8_t* b_or_a = b ? b : a;
  for (int64_t x = 0; x < width; ++x) {
    const int32_t r = std::max(a[x], b_or_a[x]);
    const int32_t g = std::max(a[plane + x], b_or_a[plane + x]);
    const int32_t bl = std::max(a[2 * plane + x], b_or_a[2 * plane + x]);
    gray[x] = static_cast<uint8_t>((r * kGrayR + g * kGrayG + bl * kGrayB + half) >> kGrayShift);
  }
}

GrayRow pick_gray_row() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();  // the CPU model may not be set up yet inside a shared library
  if (__builtin_cpu_supports("avx2")) return gray_row_avx2;
#endif
  return gray_row_portable;
}

// acc[x] += weight * gray[x]; the compiler vectorizes it.
void accumulate_row(float weight, const uint8_t* gray, int64_t width, float* acc) {
  for (int64_t x = 0; x < width; ++x) acc[x] += weight * static_cast<float>(gray[x]);
}

// Rounds 0 <= v < 2^22 to the nearest integer, half to even (as OpenCV's area
// resize and CUDA's __float2int_rn do): adding 1.5 * 2^23 leaves no fraction bits,
// so the float add itself rounds. Inline, unlike a call to lrintf.
inline uint8_t round_half_even(float v) {
  constexpr float kShift = 12582912.0f;
  return static_cast<uint8_t>(std::min((v + kShift) - kShift, 255.0f));
}

// out[x] = round(sum of the column taps of x over acc). Taps is a template parameter for the common
// counts so the inner loop unrolls.
template <int64_t kTaps>
void resample_columns_fixed(const float* acc, const PaddedTaps& cols, int64_t out_width,
                            uint8_t* out) {
  const int64_t taps = kTaps > 0 ? kTaps : cols.per_output;
  const int32_t* source = cols.source.data();
  const float* weight = cols.weight.data();
  for (int64_t x = 0; x < out_width; ++x) {
    float sum = 0.0f;
    for (int64_t t = 0; t < taps; ++t) sum += weight[x * taps + t] * acc[source[x * taps + t]];
    out[x] = round_half_even(sum);
  }
}

void resample_columns(const float* acc, const PaddedTaps& cols, int64_t out_width, uint8_t* out) {
  switch (cols.per_output) {
    case 1: return resample_columns_fixed<1>(acc, cols, out_width, out);
    case 2: return resample_columns_fixed<2>(acc, cols, out_width, out);
    case 3: return resample_columns_fixed<3>(acc, cols, out_width, out);
    case 4: return resample_columns_fixed<4>(acc, cols, out_width, out);
    default: return resample_columns_fixed<0>(acc, cols, out_width, out);
  }
}

void preprocess_frames_cpu(const at::Tensor& frames_in,
                           const std::optional<at::Tensor>& prev_frames_in,
                           at::IntArrayRef crop, at::IntArrayRef resize, at::IntArrayRef window,
                           bool channels_first, at::Tensor out) {
  const PreprocessGeometry g =
      check_preprocess(frames_in, prev_frames_in, crop, resize, window, channels_first, out);
  const at::Tensor frames = frames_in.contiguous();
  const at::Tensor prev = prev_frames_in.has_value() ? prev_frames_in->contiguous() : at::Tensor();
  const AreaTaps rows = area_taps(g.crop_height, g.resize_height);
  const PaddedTaps cols = pad_taps(area_taps(g.crop_width, g.resize_width), g.window_left,
                                   g.window_width);
  // Only the input rows under the window are read, each turned gray once.
  const int64_t first_row = rows.source[rows.begin[g.window_top]];
  const int64_t end_row = rows.source[rows.begin[g.window_top + g.window_height] - 1] + 1;
  const int64_t cw = g.crop_width;

  const uint8_t* src = frames.data_ptr<uint8_t>();
  const uint8_t* src_prev = prev.defined() ? prev.data_ptr<uint8_t>() : nullptr;
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t plane = g.height * g.width, frame_bytes = 3 * plane;

  static const GrayRow gray_row = pick_gray_row();
  const int64_t grain = std::max<int64_t>(1, kBytesPerThread / frame_bytes);
  at::parallel_for(0, frames.size(0), grain, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> gray((end_row - first_row) * cw);
    std::vector<float> acc(cw);
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t y = first_row; y < end_row; ++y) {
        const int64_t pixel = (g.crop_top + y) * g.width + g.crop_left;
        const int64_t offset = n * frame_bytes + (channels_first ? pixel : 3 * pixel);
        uint8_t* gray_out = gray.data() + (y - first_row) * cw;
        if (channels_first)
          gray_row_planar(src + offset, src_prev ? src_prev + offset : nullptr, plane, cw, gray_out);
        else
          gray_row(src + offset, src_prev ? src_prev + offset : nullptr, cw, gray_out);
      }
      uint8_t* o = dst + n * g.window_height * g.window_width;
      for (int64_t oy = 0; oy < g.window_height; ++oy) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        const int64_t r = g.window_top + oy;
        for (int32_t t = rows.begin[r]; t < rows.begin[r + 1]; ++t)
          accumulate_row(rows.weight[t], gray.data() + (rows.source[t] - first_row) * cw, cw,
                         acc.data());
        resample_columns(acc.data(), cols, g.window_width, o + oy * g.window_width);
      }
    }
  });
}

void push_frames_cpu(const at::Tensor& stacks, const at::Tensor& frames_in,
                     const std::optional<at::Tensor>& reset_in, at::Tensor out) {
  check_push_frames(stacks, frames_in, reset_in, out);
  const at::Tensor frames = frames_in.contiguous();
  const at::Tensor reset = reset_in.has_value() ? reset_in->contiguous() : at::Tensor();
  const int64_t k = stacks.size(1);
  const int64_t fb = frames.numel() / std::max<int64_t>(frames.size(0), 1) * frames.element_size();
  const uint8_t* old = static_cast<const uint8_t*>(stacks.data_ptr());
  uint8_t* dst = static_cast<uint8_t*>(out.data_ptr());
  const uint8_t* src = static_cast<const uint8_t*>(frames.data_ptr());
  const bool* resets = reset.defined() ? reset.data_ptr<bool>() : nullptr;
  const int64_t grain = std::max<int64_t>(1, kBytesPerThread / std::max<int64_t>(k * fb, 1));
  at::parallel_for(0, stacks.size(0), grain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      uint8_t* stack = dst + n * k * fb;
      const uint8_t* frame = src + n * fb;
      if (resets != nullptr && resets[n]) {
        for (int64_t i = 0; i < k; ++i) std::memcpy(stack + i * fb, frame, fb);
      } else {
        std::memcpy(stack, old + n * k * fb + fb, (k - 1) * fb);
        std::memcpy(stack + (k - 1) * fb, frame, fb);
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dqnfast, CPU, m) {
  m.impl("preprocess_frames", &preprocess_frames_cpu);
  m.impl("push_frames", &push_frames_cpu);
}

}  // namespace dqnfast
