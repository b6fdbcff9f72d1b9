// CUDA kernels of the replay buffer: add (one block per environment row) and
// sample (one block per sampled transition). Same layout and arithmetic as the
// CPU code (csrc/cpu/replay_buffer_cpu.cpp), so both give identical contents.
#include "../replay_layout.h"
#include "kernels.h"

namespace dqnfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Copies `bytes` from src to dst with all threads of the block, 16 bytes at a
// time where both are aligned (Atari frames are 7056 = 441 * 16 bytes).
__device__ void block_copy(uint8_t* dst, const uint8_t* src, int64_t bytes) {
  const bool aligned = ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) |
                         static_cast<uintptr_t>(bytes)) & 15) == 0;
  if (aligned) {
    const int4* s = reinterpret_cast<const int4*>(src);
    int4* d = reinterpret_cast<int4*>(dst);
    for (int64_t i = threadIdx.x; i < bytes / 16; i += blockDim.x) d[i] = s[i];
  } else {
    for (int64_t i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];
  }
}

// True in every thread iff the block's two byte ranges are equal.
__device__ bool block_equal(const uint8_t* a, const uint8_t* b, int64_t bytes) {
  int differs = 0;
  for (int64_t i = threadIdx.x; i < bytes && !differs; i += blockDim.x) differs = a[i] != b[i];
  return __syncthreads_or(differs) == 0;
}

__global__ void check_shift_kernel(const uint8_t* obs, const uint8_t* next_obs,
                                   int64_t frame_bytes, int64_t k, int* mismatch) {
  const int64_t row = blockIdx.x;
  const uint8_t* o = obs + row * k * frame_bytes;
  const uint8_t* n = next_obs + row * k * frame_bytes;
  if (!block_equal(n, o + frame_bytes, (k - 1) * frame_bytes) && threadIdx.x == 0)
    atomicOr(mismatch, 1);
}

__global__ void add_kernel(ReplayStorage s, const uint8_t* obs, const uint8_t* next_obs,
                           const int64_t* action, const float* reward, const bool* terminated,
                           const bool* truncated, const int64_t* env_ids, const int* mismatch,
                           int64_t* rejected_adds) {
  // Thread 0 reads the counters once for the block: it rewrites them at the end,
  // and a warp that read them after that would write to the wrong ring slots.
  __shared__ int64_t frames_before;
  __shared__ bool stream_open, rejected;
  const int64_t i = blockIdx.x;
  const int64_t e = env_ids[i];
  int64_t* c = s.counters + e * kNumCounters;
  if (threadIdx.x == 0) {
    rejected = *mismatch != 0;
    if (rejected && i == 0) ++*rejected_adds;  // one count per call
    frames_before = c[kFramesWritten];
    stream_open = c[kStreamOpen] != 0;
  }
  __syncthreads();
  // A rejected call writes nothing (the host learns of it from rejected_adds).
  if (rejected) return;
  const int64_t k = s.frame_stack, fb = s.frame_bytes, F = s.frame_capacity, C = s.capacity;
  uint8_t* ring = s.frames + e * F * fb;
  const uint8_t* o = obs + i * k * fb;
  const uint8_t* n = next_obs + i * k * fb;
  const int64_t fw = frames_before;

  // A new stream starts at an episode start or wherever obs is not the stored
  // next_obs: then all k frames of obs are stored. `continues` is the same in every
  // thread (shared memory, then block_equal), so the whole block reaches each barrier;
  // the last block_equal's barrier orders the ring's reads before the writes below.
  bool continues = stream_open;
  for (int64_t j = 0; j < k && continues; ++j)
    continues = block_equal(ring + frame_slot(fw - k + j, F) * fb, o + j * fb, fb);
  int64_t written = fw;
  if (!continues) {
    for (int64_t j = 0; j < k; ++j) block_copy(ring + frame_slot(fw + j, F) * fb, o + j * fb, fb);
    written += k;
  }
  block_copy(ring + frame_slot(written, F) * fb, n + (k - 1) * fb, fb);
  if (threadIdx.x != 0) return;

  const int64_t n_written = c[kTransitionsWritten];
  const int64_t at = e * C + n_written % C;
  s.obs_pos[at] = written - 1;
  s.action[at] = action[i];
  s.reward[at] = reward[i];
  s.terminated[at] = terminated[i];
  s.truncated[at] = truncated[i];
  const int64_t tw = n_written + 1, frames_written = written + 1;
  int64_t first_valid = max(c[kFirstValid], tw - C);
  while (first_valid < tw && s.obs_pos[e * C + first_valid % C] - (k - 1) < frames_written - F)
    ++first_valid;
  c[kTransitionsWritten] = tw;
  c[kFramesWritten] = frames_written;
  c[kFirstValid] = first_valid;
  c[kStreamOpen] = !(terminated[i] || truncated[i]);
}

__global__ void sample_kernel(ReplayStorage s, const int64_t* random_bits, uint8_t* out_obs,
                              uint8_t* out_next_obs, int64_t* out_action, float* out_reward,
                              bool* out_terminated) {
  __shared__ SampledSlot picked;
  const int64_t b = blockIdx.x;
  if (threadIdx.x == 0) {
    const int64_t total = valid_count(s.counters, s.num_envs);
    picked = total > 0 ? pick_transition(static_cast<uint64_t>(random_bits[b]), s.counters,
                                         s.num_envs, s.capacity, total)
                       : SampledSlot{-1, -1};
  }
  __syncthreads();
  const int64_t k = s.frame_stack, fb = s.frame_bytes, F = s.frame_capacity;
  if (picked.env < 0) {
    // Empty buffer (a captured sample replayed too early): raising would need a host
    // sync, so the row is defined instead, all zeros, rather than read out of bounds.
    for (int64_t i = threadIdx.x; i < k * fb; i += blockDim.x) {
      out_obs[b * k * fb + i] = 0;
      out_next_obs[b * k * fb + i] = 0;
    }
    if (threadIdx.x == 0) {
      out_action[b] = 0;
      out_reward[b] = 0.0f;
      out_terminated[b] = false;
    }
    return;
  }
  const int64_t at = picked.env * s.capacity + picked.slot;
  const uint8_t* ring = s.frames + picked.env * F * fb;
  const int64_t newest = s.obs_pos[at];
  for (int64_t j = 0; j < k; ++j) {
    block_copy(out_obs + (b * k + j) * fb, ring + frame_slot(newest - k + 1 + j, F) * fb, fb);
    block_copy(out_next_obs + (b * k + j) * fb, ring + frame_slot(newest - k + 2 + j, F) * fb, fb);
  }
  if (threadIdx.x == 0) {
    out_action[b] = s.action[at];
    out_reward[b] = s.reward[at];
    out_terminated[b] = s.terminated[at];
  }
}

}  // namespace

cudaError_t replay_check_shift(const uint8_t* obs, const uint8_t* next_obs, int64_t rows,
                               int64_t frame_bytes, int64_t frame_stack, int* mismatch,
                               cudaStream_t stream) {
  if (rows == 0 || frame_stack == 1) return cudaSuccess;
  check_shift_kernel<<<rows, kThreads, 0, stream>>>(obs, next_obs, frame_bytes, frame_stack,
                                                    mismatch);
  return cudaGetLastError();
}

cudaError_t replay_add(ReplayStorage storage, const uint8_t* obs, const uint8_t* next_obs,
                       const int64_t* action, const float* reward, const bool* terminated,
                       const bool* truncated, const int64_t* env_ids, int64_t rows,
                       const int* mismatch, int64_t* rejected_adds, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  add_kernel<<<rows, kThreads, 0, stream>>>(storage, obs, next_obs, action, reward, terminated,
                                            truncated, env_ids, mismatch, rejected_adds);
  return cudaGetLastError();
}

cudaError_t replay_sample(ReplayStorage storage, const int64_t* random_bits, int64_t batch,
                          uint8_t* out_obs, uint8_t* out_next_obs, int64_t* out_action,
                          float* out_reward, bool* out_terminated, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  sample_kernel<<<batch, kThreads, 0, stream>>>(storage, random_bits, out_obs, out_next_obs,
                                                out_action, out_reward, out_terminated);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace dqnfast
