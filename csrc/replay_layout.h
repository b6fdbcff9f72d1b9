// Index arithmetic of the replay buffer, shared by the CPU code and the CUDA
// kernels. Plain C++ (no torch, no CUDA runtime headers) so that nvcc can
// compile it on a machine whose torch is a CPU build.
//
// Layout (per environment e, E environments in all):
//   frames[e][F][frame_bytes]   frame ring; absolute frame position p lives at p % F
//   obs_pos[e][C]               transition ring; absolute transition n lives at n % C
//                               and stores the frame position of its obs's newest frame
//   counters[e][4]              kTransitionsWritten, kFramesWritten, kFirstValid, kStreamOpen
// A transition n of env e with k stacked frames has
//   obs      = frames at positions obs_pos - k + 1 .. obs_pos
//   next_obs = frames at positions obs_pos - k + 2 .. obs_pos + 1
// and is valid iff first_valid <= n < transitions_written; first_valid is kept at
// the oldest transition whose slot and frames have not been overwritten.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DQNFAST_HOST_DEVICE __host__ __device__
#else
#define DQNFAST_HOST_DEVICE
#endif

namespace dqnfast {

enum Counter : int64_t {
  kTransitionsWritten = 0,
  kFramesWritten = 1,
  kFirstValid = 2,
  kStreamOpen = 3,
  kNumCounters = 4,
};

// Where one sampled transition lives: its environment and its frame position.
struct SampledSlot {
  int64_t env;
  int64_t slot;  // index into the transition ring of `env`
};

// Maps a uniform random 63-bit integer onto one valid transition, uniform over
// the union of all environments' valid transitions (`total` of them, > 0).
// O(num_envs) with num_envs small; no rejection.
DQNFAST_HOST_DEVICE inline SampledSlot pick_transition(
    uint64_t random_bits, const int64_t* counters, int64_t num_envs,
    int64_t capacity_per_env, int64_t total) {
  int64_t r = static_cast<int64_t>(random_bits % static_cast<uint64_t>(total));
  int64_t env = 0;
  for (; env < num_envs - 1; ++env) {
    const int64_t* c = counters + env * kNumCounters;
    int64_t count = c[kTransitionsWritten] - c[kFirstValid];
    if (r < count) break;
    r -= count;
  }
  const int64_t* c = counters + env * kNumCounters;
  int64_t n = c[kFirstValid] + r;
  return {env, n % capacity_per_env};
}

DQNFAST_HOST_DEVICE inline int64_t valid_count(const int64_t* counters,
                                               int64_t num_envs) {
  int64_t total = 0;
  for (int64_t e = 0; e < num_envs; ++e) {
    const int64_t* c = counters + e * kNumCounters;
    total += c[kTransitionsWritten] - c[kFirstValid];
  }
  return total;
}

// Ring index of frame position `p` (never negative for valid transitions).
DQNFAST_HOST_DEVICE inline int64_t frame_slot(int64_t p, int64_t frame_capacity) {
  return p % frame_capacity;
}

}  // namespace dqnfast
