// CUDA kernels of the preprocessing ops: one thread per output pixel. The
// float arithmetic is done in the CPU code's order with explicit round-to-
// nearest operations (no fused multiply-add), so results equal the CPU's bit
// for bit (csrc/cpu/preprocess_cpu.cpp).
#include "../preprocess_layout.h"
#include "kernels.h"

namespace dqnfast {
namespace cuda {
namespace {

__device__ __forceinline__ int gray_at(const PreprocessPlan& p, const uint8_t* frame,
                                       const uint8_t* prev, int64_t row, int64_t col) {
  const int64_t y = p.crop_top + row, x = p.crop_left + col;
  const int64_t plane = p.height * p.width;
  int64_t offset[3];
  for (int c = 0; c < 3; ++c)
    offset[c] = p.channels_first ? c * plane + y * p.width + x : (y * p.width + x) * 3 + c;
  int channel[3];
  for (int c = 0; c < 3; ++c) {
    channel[c] = frame[offset[c]];
    if (prev != nullptr) channel[c] = max(channel[c], static_cast<int>(prev[offset[c]]));
  }
  return (channel[0] * kGrayR + channel[1] * kGrayG + channel[2] * kGrayB +
          (1 << (kGrayShift - 1))) >> kGrayShift;
}

__global__ void preprocess_kernel(PreprocessPlan p, const uint8_t* frames, const uint8_t* prev,
                                  uint8_t* out) {
  const int64_t pixel = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t per_frame = p.window_height * p.window_width;
  if (pixel >= p.num_frames * per_frame) return;
  const int64_t n = pixel / per_frame;
  const int64_t oy = pixel % per_frame / p.window_width, ox = pixel % p.window_width;
  const int64_t frame_bytes = p.height * p.width * 3;
  const uint8_t* frame = frames + n * frame_bytes;
  const uint8_t* prev_frame = prev ? prev + n * frame_bytes : nullptr;
  const int64_t r = p.window_top + oy;

  float sum = 0.0f;
  for (int64_t tc = 0; tc < p.col_taps; ++tc) {
    const int64_t col = p.col_source[ox * p.col_taps + tc];
    // The CPU's column accumulator at `col`: row taps summed in order from 0.
    float acc = 0.0f;
    for (int32_t tr = p.row_begin[r]; tr < p.row_begin[r + 1]; ++tr)
      acc = __fadd_rn(acc, __fmul_rn(p.row_weight[tr],
                                     static_cast<float>(gray_at(p, frame, prev_frame,
                                                                p.row_source[tr], col))));
    sum = __fadd_rn(sum, __fmul_rn(p.col_weight[ox * p.col_taps + tc], acc));
  }
  out[pixel] = static_cast<uint8_t>(min(__float2int_rn(sum), 255));
}

__global__ void push_frames_kernel(const uint8_t* stacks, const uint8_t* frames,
                                   const bool* reset, uint8_t* out, int64_t n, int64_t k,
                                   int64_t frame_bytes) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= n * frame_bytes) return;
  const int64_t env = index / frame_bytes, byte = index % frame_bytes;
  const uint8_t* old = stacks + env * k * frame_bytes + byte;
  uint8_t* stack = out + env * k * frame_bytes + byte;
  const uint8_t value = frames[index];
  // Each thread owns one byte offset in all k frames of its stack.
  if (reset != nullptr && reset[env]) {
    for (int64_t j = 0; j < k; ++j) stack[j * frame_bytes] = value;
  } else {
    for (int64_t j = 0; j + 1 < k; ++j) stack[j * frame_bytes] = old[(j + 1) * frame_bytes];
    stack[(k - 1) * frame_bytes] = value;
  }
}

constexpr int kThreads = 256;

int64_t blocks_for(int64_t items) { return (items + kThreads - 1) / kThreads; }

}  // namespace

cudaError_t preprocess_frames(const PreprocessPlan& plan, const uint8_t* frames,
                              const uint8_t* prev_frames, uint8_t* out, cudaStream_t stream) {
  const int64_t pixels = plan.num_frames * plan.window_height * plan.window_width;
  if (pixels == 0) return cudaSuccess;
  preprocess_kernel<<<blocks_for(pixels), kThreads, 0, stream>>>(plan, frames, prev_frames, out);
  return cudaGetLastError();
}

cudaError_t push_frames(const uint8_t* stacks, const uint8_t* frames, const bool* reset,
                        uint8_t* out, int64_t n, int64_t frame_stack, int64_t frame_bytes,
                        cudaStream_t stream) {
  if (n * frame_bytes == 0) return cudaSuccess;
  push_frames_kernel<<<blocks_for(n * frame_bytes), kThreads, 0, stream>>>(
      stacks, frames, reset, out, n, frame_stack, frame_bytes);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace dqnfast
