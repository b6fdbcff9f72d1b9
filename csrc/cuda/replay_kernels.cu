// CUDA kernels of the replay buffer: add (one block per environment row, then one
// block refreshing the priority trees) and sample (one block per sampled
// transition). Same layout and arithmetic as the CPU code
// (csrc/cpu/replay_buffer_cpu.cpp), so both give identical contents.
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

// True in every thread iff one of the block's `count` floats (`bits` says their
// width and exponent) is infinite or NaN: all exponent bits set.
__device__ bool block_has_nonfinite(const uint8_t* values, int64_t count, FloatBits bits) {
  int found = 0;
  for (int64_t i = threadIdx.x; i < count && !found; i += blockDim.x) {
    uint64_t v = 0;
    if (bits.bytes == 2) v = reinterpret_cast<const uint16_t*>(values)[i];
    else if (bits.bytes == 4) v = reinterpret_cast<const uint32_t*>(values)[i];
    else v = reinterpret_cast<const uint64_t*>(values)[i];
    found = (v & bits.exponent) == bits.exponent;
  }
  return __syncthreads_or(found) != 0;
}

// One block per row: ORs into *reasons the kRejected* bits of what is wrong with it.
__global__ void check_rows_kernel(const uint8_t* obs, const uint8_t* next_obs,
                                  const int64_t* action, const float* reward,
                                  int64_t frame_bytes, int64_t k, int64_t num_actions,
                                  FloatBits float_bits, int* reasons) {
  const int64_t row = blockIdx.x, stack_bytes = k * frame_bytes;
  const uint8_t* o = obs + row * stack_bytes;
  const uint8_t* n = next_obs + row * stack_bytes;
  int found = 0;
  if (k > 1 && !block_equal(n, o + frame_bytes, (k - 1) * frame_bytes)) found |= kRejectedShift;
  if (float_bits.bytes != 0 &&
      (block_has_nonfinite(o, stack_bytes / float_bits.bytes, float_bits) ||
       block_has_nonfinite(n, stack_bytes / float_bits.bytes, float_bits)))
    found |= kRejectedObservation;
  if (threadIdx.x != 0) return;
  const int64_t a = action[row];
  if (a < 0 || (num_actions > 0 && a >= num_actions)) found |= kRejectedAction;
  if (!isfinite(reward[row])) found |= kRejectedReward;
  if (found) atomicOr(reasons, found);
}

__global__ void add_kernel(ReplayStorage s, const uint8_t* obs, const uint8_t* next_obs,
                           const int64_t* action, const float* reward, const bool* terminated,
                           const bool* truncated, const int64_t* env_ids, const int* mismatch,
                           int64_t* rejected_adds, const float* new_priority, double alpha,
                           double priority_eps, int64_t* ranges) {
  // Thread 0 reads the counters once for the block: it rewrites them at the end,
  // and a warp that read them after that would write to the wrong ring slots.
  __shared__ int64_t frames_before;
  __shared__ bool stream_open, rejected;
  const int64_t i = blockIdx.x;
  const int64_t e = env_ids[i];
  int64_t* c = s.counters + e * kNumCounters;
  if (threadIdx.x == 0) {
    rejected = *mismatch != 0;
    if (rejected && i == 0) {  // one count per call, and why
      ++rejected_adds[0];
      rejected_adds[1] |= *mismatch;
    }
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
  const bool prioritized = s.tree.sum != nullptr;
  if (prioritized) {
    ranges[4 * i] = c[kFirstValid];
    ranges[4 * i + 1] = sampleable_end(c, s.n_step);
    const bool given = new_priority != nullptr && priority_is_valid(new_priority[i]);
    const float p = given ? priority_of(new_priority[i], alpha, priority_eps) : *s.tree.max_priority;
    s.tree.priority[at] = p;
    // Positive floats order as their bit patterns do.
    if (given) atomicMax(reinterpret_cast<int*>(s.tree.max_priority), __float_as_int(p));
  }
  c[kTransitionsWritten] = tw;
  c[kFramesWritten] = frames_written;
  c[kFirstValid] = first_valid;
  c[kStreamOpen] = !(terminated[i] || truncated[i]);
  if (!continues) c[kStreamStart] = n_written;
  if (prioritized) {
    ranges[4 * i + 2] = first_valid;
    ranges[4 * i + 3] = sampleable_end(c, s.n_step);
  }
}

// Calls visit(begin, end) for each run of leaves whose value an add may have
// changed: row i's transitions [ranges[4i], ranges[4i+2]) (evicted) and
// [ranges[4i+1], ranges[4i+3]) (windows completed).
template <typename Visit>
__device__ void for_each_changed_run(const ReplayStorage& s, const int64_t* env_ids,
                                     const int64_t* ranges, int64_t rows, Visit visit) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int r = 0; r < 2; ++r) {
      const LeafRuns runs =
          leaf_runs(env_ids[i], ranges[4 * i + r], ranges[4 * i + r + 2], s.capacity);
      for (int j = 0; j < runs.count; ++j) visit(env_ids[i], runs.begin[j], runs.end[j]);
    }
  }
}

// One block: the changed leaves from the final counters, then their ancestors level
// by level, a barrier between levels (each node recomputed from children final by
// then; a node two runs share gets the same value twice).
__global__ void refresh_after_add_kernel(ReplayStorage s, const int64_t* env_ids,
                                         const int64_t* ranges, int64_t rows,
                                         const int* mismatch) {
  if (*mismatch != 0) return;  // a rejected add changed nothing (and wrote no ranges)
  const PriorityTree& t = s.tree;
  for_each_changed_run(s, env_ids, ranges, rows, [&](int64_t env, int64_t begin, int64_t end) {
    const int64_t* c = s.counters + env * kNumCounters;
    for (int64_t leaf = begin + threadIdx.x; leaf < end; leaf += blockDim.x)
      refresh_leaf(t, c, env, leaf - env * s.capacity, s.capacity, s.n_step);
  });
  __syncthreads();
  for (int level = 1, depth = tree_depth(t.num_leaves); level <= depth; ++level) {
    for_each_changed_run(s, env_ids, ranges, rows, [&](int64_t, int64_t begin, int64_t end) {
      const int64_t lo = (t.num_leaves + begin) >> level, hi = (t.num_leaves + end - 1) >> level;
      for (int64_t node = lo + threadIdx.x; node <= hi; node += blockDim.x) refresh_node(t, node);
    });
    __syncthreads();
  }
}

// What thread 0 of a sample block picks for the others.
struct Picked {
  int64_t env;  // -1: the buffer is empty
  int64_t number;
  float weight;
  NStepReturn ret;
};

__global__ void sample_kernel(ReplayStorage s, const int64_t* random_bits, double gamma,
                              const double* beta, SampleOutputs out) {
  __shared__ Picked picked;
  const int64_t b = blockIdx.x;
  if (threadIdx.x == 0) {
    picked.env = -1;
    if (s.tree.sum != nullptr) {
      if (s.tree.sum[1] > 0.0) {
        const int64_t leaf = descend(s.tree, stratified_target(s.tree, b, gridDim.x, random_bits[b]));
        picked.env = leaf / s.capacity;
        picked.number = transition_in_slot(s.counters + picked.env * kNumCounters,
                                           leaf % s.capacity, s.capacity);
        picked.weight = importance_weight(s.tree, s.tree.sum[s.tree.num_leaves + leaf], *beta);
      }
    } else {
      const int64_t total = sampleable_total(s.counters, s.num_envs, s.n_step);
      if (total > 0) {
        const SampledTransition t = pick_transition(static_cast<uint64_t>(random_bits[b]),
                                                    s.counters, s.num_envs, s.n_step, total);
        picked.env = t.env;
        picked.number = t.number;
        picked.weight = 1.0f;
      }
    }
    if (picked.env >= 0) {
      const int64_t base = picked.env * s.capacity;
      picked.ret = n_step_return(picked.number, s.obs_pos + base, s.reward + base,
                                 s.terminated + base, s.truncated + base, s.capacity,
                                 s.counters[picked.env * kNumCounters + kTransitionsWritten],
                                 s.n_step, gamma);
    }
  }
  __syncthreads();
  const int64_t k = s.frame_stack, fb = s.frame_bytes, F = s.frame_capacity;
  if (picked.env < 0) {
    // Empty buffer (a captured sample replayed too early): raising would need a host
    // sync, so the row is defined instead, all zeros, rather than read out of bounds.
    for (int64_t i = threadIdx.x; i < k * fb; i += blockDim.x) {
      out.obs[b * k * fb + i] = 0;
      out.next_obs[b * k * fb + i] = 0;
    }
    if (threadIdx.x == 0) {
      out.action[b] = 0;
      out.reward[b] = 0.0f;
      out.terminated[b] = false;
      out.discount[b] = 0.0f;
      out.index[b] = 0;
      out.weight[b] = 0.0f;
    }
    return;
  }
  const int64_t base = picked.env * s.capacity;
  const uint8_t* ring = s.frames + picked.env * F * fb;
  const int64_t newest = s.obs_pos[base + picked.number % s.capacity];
  const int64_t next_newest = s.obs_pos[base + picked.ret.last % s.capacity] + 1;
  for (int64_t j = 0; j < k; ++j) {
    block_copy(out.obs + (b * k + j) * fb, ring + frame_slot(newest - k + 1 + j, F) * fb, fb);
    block_copy(out.next_obs + (b * k + j) * fb, ring + frame_slot(next_newest - k + 1 + j, F) * fb,
               fb);
  }
  if (threadIdx.x == 0) {
    out.action[b] = s.action[base + picked.number % s.capacity];
    out.reward[b] = picked.ret.reward;
    out.terminated[b] = picked.ret.terminated;
    out.discount[b] = picked.ret.discount;
    out.index[b] = encode_index(picked.env, picked.number, s.num_envs);
    out.weight[b] = picked.weight;
  }
}

}  // namespace

cudaError_t replay_check_rows(const uint8_t* obs, const uint8_t* next_obs,
                              const int64_t* action, const float* reward, int64_t rows,
                              int64_t frame_bytes, int64_t frame_stack, int64_t num_actions,
                              FloatBits float_bits, int* mismatch, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  check_rows_kernel<<<rows, kThreads, 0, stream>>>(obs, next_obs, action, reward, frame_bytes,
                                                   frame_stack, num_actions, float_bits,
                                                   mismatch);
  return cudaGetLastError();
}

cudaError_t replay_add(ReplayStorage storage, const uint8_t* obs, const uint8_t* next_obs,
                       const int64_t* action, const float* reward, const bool* terminated,
                       const bool* truncated, const int64_t* env_ids, const int* mismatch,
                       int64_t* rejected_adds, const float* new_priority, double alpha,
                       double priority_eps, int64_t* ranges, int64_t rows, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  add_kernel<<<rows, kThreads, 0, stream>>>(storage, obs, next_obs, action, reward, terminated,
                                            truncated, env_ids, mismatch, rejected_adds,
                                            new_priority, alpha, priority_eps, ranges);
  if (storage.tree.sum == nullptr) return cudaGetLastError();
  refresh_after_add_kernel<<<1, kThreads, 0, stream>>>(storage, env_ids, ranges, rows, mismatch);
  return cudaGetLastError();
}

cudaError_t replay_sample(ReplayStorage storage, const int64_t* random_bits, int64_t batch,
                          double gamma, const double* beta, SampleOutputs out,
                          cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  sample_kernel<<<batch, kThreads, 0, stream>>>(storage, random_bits, gamma, beta, out);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace dqnfast
