// Index arithmetic of the replay buffer, shared by the CPU code and the CUDA
// kernels. Plain C++ (no torch, no CUDA runtime headers) so that nvcc can
// compile it on a machine whose torch is a CPU build.
//
// Layout (per environment e, E environments in all):
//   frames[e][F][frame_bytes]   frame ring; absolute frame position p lives at p % F
//   obs_pos[e][C]               transition ring; absolute transition n lives at n % C
//                               and stores the frame position of its obs's newest frame
//   counters[e][5]              kTransitionsWritten, kFramesWritten, kFirstValid,
//                               kStreamOpen, kStreamStart
// A transition n of env e with k stacked frames has
//   obs      = frames at positions obs_pos - k + 1 .. obs_pos
//   next_obs = frames at positions obs_pos - k + 2 .. obs_pos + 1
// and is stored iff first_valid <= n < transitions_written; first_valid is kept at
// the oldest transition whose slot and frames have not been overwritten.
//
// n-step windows. Transition n + 1 continues transition n iff neither flag is set
// on n and obs_pos[n + 1] == obs_pos[n] + 1 (a stream restart stores a whole new
// stack). The window of n is n, n + 1, ... up to n_step transitions, ending early at
// a terminated or truncated transition or before a restart. The transitions of the
// open stream (from kStreamStart on) whose window still lacks transitions are
// pending; n is sampleable iff first_valid <= n < sampleable_end.
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
  kStreamStart = 4,  // first transition of the open stream
  kNumCounters = 5,
};

// Why the GPU rejected an add: bits ORed into rejected_adds[1] (the CPU raises instead).
enum RejectedReason : int64_t {
  kRejectedShift = 1,        // next_obs[:-1] differs from obs[1:]
  kRejectedAction = 2,       // an action outside [0, num_actions)
  kRejectedReward = 4,       // a non-finite reward
  kRejectedObservation = 8,  // a non-finite float observation
};

// Double arithmetic rounded alike on both sides: nvcc would otherwise contract
// a * b + c into one fused multiply-add (the CPU build passes -ffp-contract=off).
DQNFAST_HOST_DEVICE inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

DQNFAST_HOST_DEVICE inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// Transitions at the end of the open stream whose n-step window is incomplete.
DQNFAST_HOST_DEVICE inline int64_t pending_count(const int64_t* c, int64_t n_step) {
  if (c[kStreamOpen] == 0) return 0;
  const int64_t in_stream = c[kTransitionsWritten] - c[kStreamStart];
  return in_stream < n_step - 1 ? in_stream : n_step - 1;
}

// One past the newest sampleable transition of an environment.
DQNFAST_HOST_DEVICE inline int64_t sampleable_end(const int64_t* c, int64_t n_step) {
  return c[kTransitionsWritten] - pending_count(c, n_step);
}

// The constructor's bounds (C >= n_step, F >= k + n_step) keep first_valid at or
// below sampleable_end; the clamp keeps a corrupted state from indexing outside.
DQNFAST_HOST_DEVICE inline int64_t sampleable_count(const int64_t* c, int64_t n_step) {
  const int64_t count = sampleable_end(c, n_step) - c[kFirstValid];
  return count > 0 ? count : 0;
}

DQNFAST_HOST_DEVICE inline int64_t sampleable_total(const int64_t* counters, int64_t num_envs,
                                                    int64_t n_step) {
  int64_t total = 0;
  for (int64_t e = 0; e < num_envs; ++e)
    total += sampleable_count(counters + e * kNumCounters, n_step);
  return total;
}

// The absolute number of the transition held in `slot` (negative: never written).
DQNFAST_HOST_DEVICE inline int64_t transition_in_slot(const int64_t* c, int64_t slot,
                                                      int64_t capacity_per_env) {
  const int64_t newest = c[kTransitionsWritten] - 1;
  return newest < slot ? -1 : newest - (newest - slot) % capacity_per_env;
}

// A transition as the batch names it: environment and absolute number in one
// int64, so a later priority update can tell whether the slot was reused since.
DQNFAST_HOST_DEVICE inline int64_t encode_index(int64_t env, int64_t number, int64_t num_envs) {
  return number * num_envs + env;
}

// One sampled transition: its environment and absolute transition number.
struct SampledTransition {
  int64_t env;
  int64_t number;
};

// Maps a uniform random 63-bit integer onto one sampleable transition, uniform
// over the union of all environments' sampleable transitions (`total` of them,
// > 0). O(num_envs) with num_envs small; no rejection.
DQNFAST_HOST_DEVICE inline SampledTransition pick_transition(
    uint64_t random_bits, const int64_t* counters, int64_t num_envs, int64_t n_step,
    int64_t total) {
  int64_t r = static_cast<int64_t>(random_bits % static_cast<uint64_t>(total));
  int64_t env = 0;
  for (; env < num_envs - 1; ++env) {
    const int64_t count = sampleable_count(counters + env * kNumCounters, n_step);
    if (r < count) break;
    r -= count;
  }
  return {env, counters[env * kNumCounters + kFirstValid] + r};
}

// The n-step return of one transition (see the window rule above).
struct NStepReturn {
  int64_t last;    // absolute number of the window's last transition: next_obs is its
  float reward;    // sum of gamma^i r_{first+i} over the window
  float discount;  // gamma^length, or 0 if the episode terminated in the window
  bool terminated;
};

// `pos`, `reward`, `terminated` and `truncated` point at environment e's rings;
// `transitions_written` bounds the walk (only reached on a corrupted state).
DQNFAST_HOST_DEVICE inline NStepReturn n_step_return(
    int64_t first, const int64_t* pos, const float* reward, const bool* terminated,
    const bool* truncated, int64_t capacity_per_env, int64_t transitions_written,
    int64_t n_step, double gamma) {
  double sum = 0.0, scale = 1.0;
  for (int64_t m = first;; ++m) {
    const int64_t s = m % capacity_per_env;
    sum = add_rn(sum, mul_rn(scale, static_cast<double>(reward[s])));
    scale = mul_rn(scale, gamma);
    if (terminated[s]) return {m, static_cast<float>(sum), 0.0f, true};
    const bool window_ends = truncated[s] || m - first + 1 == n_step ||
                             m + 1 == transitions_written ||
                             pos[(m + 1) % capacity_per_env] != pos[s] + 1;
    if (window_ends) return {m, static_cast<float>(sum), static_cast<float>(scale), false};
  }
}

// Ring index of frame position `p` (never negative for valid transitions).
DQNFAST_HOST_DEVICE inline int64_t frame_slot(int64_t p, int64_t frame_capacity) {
  return p % frame_capacity;
}

}  // namespace dqnfast
