// Area-interpolation tables for the preprocessing ops, shared by the CPU code
// and the CUDA kernels. Plain C++: nvcc compiles it without torch headers.
//
// Area resize from `in` to `out` samples (out <= in) along one axis: output
// sample d covers input [d * s, (d + 1) * s) with s = in / out, and takes the
// mean of the input samples under it, weighted by how much of each is covered
// (OpenCV's INTER_AREA when shrinking). Weights of one output sample sum to 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace dqnfast {

// Grayscale of one RGB pixel, 0.299 R + 0.587 G + 0.114 B in 14-bit fixed
// point with rounding (the coefficients and rounding of OpenCV's RGB2GRAY).
constexpr int32_t kGrayShift = 14;
constexpr int32_t kGrayR = 4899, kGrayG = 9617, kGrayB = 1868;

// Taps of a 1-D area resize in compressed rows: output d reads inputs
// source[begin[d] .. begin[d + 1]) with weights weight[...].
struct AreaTaps {
  std::vector<int32_t> begin;
  std::vector<int32_t> source;
  std::vector<float> weight;
};

inline AreaTaps area_taps(int64_t in, int64_t out) {
  AreaTaps taps;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  auto add = [&](int64_t src, double w) {
    taps.source.push_back(static_cast<int32_t>(src));
    taps.weight.push_back(static_cast<float>(w));
  };
  for (int64_t d = 0; d < out; ++d) {
    taps.begin.push_back(static_cast<int32_t>(taps.source.size()));
    const double from = d * scale, to = from + scale;
    const int64_t first_whole = static_cast<int64_t>(std::ceil(from - 1e-9));
    const int64_t end_whole = std::min<int64_t>(static_cast<int64_t>(std::floor(to + 1e-9)), in);
    if (first_whole - from > 1e-6) add(first_whole - 1, (first_whole - from) / scale);
    for (int64_t s = first_whole; s < end_whole; ++s) add(s, 1.0 / scale);
    if (to - end_whole > 1e-6 && end_whole < in) add(end_whole, (to - end_whole) / scale);
  }
  taps.begin.push_back(static_cast<int32_t>(taps.source.size()));
  return taps;
}

// Taps of outputs first .. first + count - 1 padded to the same count each, so
// loops over them have a fixed trip count (padding taps have weight 0).
struct PaddedTaps {
  int64_t per_output;
  std::vector<int32_t> source;
  std::vector<float> weight;
};

inline PaddedTaps pad_taps(const AreaTaps& taps, int64_t first, int64_t count) {
  int64_t widest = 0;
  for (int64_t d = first; d < first + count; ++d)
    widest = std::max<int64_t>(widest, taps.begin[d + 1] - taps.begin[d]);
  PaddedTaps padded{widest, std::vector<int32_t>(count * widest), std::vector<float>(count * widest)};
  for (int64_t d = 0; d < count; ++d) {
    const int32_t begin = taps.begin[first + d], end = taps.begin[first + d + 1];
    for (int64_t t = 0; t < widest; ++t) {
      const bool real = begin + t < end;
      padded.source[d * widest + t] = taps.source[real ? begin + t : begin];
      padded.weight[d * widest + t] = real ? taps.weight[begin + t] : 0.0f;
    }
  }
  return padded;
}

}  // namespace dqnfast
