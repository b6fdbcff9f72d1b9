// Launchers of dqnfast's CUDA kernels. Plain pointers, sizes and a stream in,
// a cudaError_t out: this header and the .cu files include only CUDA's own
// headers, so nvcc compiles them where torch is a CPU build. The bindings in
// *_cuda.cpp (built with a CUDA torch only) wrap them as the ops' CUDA kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../priority_tree.h"
#include "../replay_storage.h"

namespace dqnfast {
namespace cuda {


// The width and exponent bits of a float observation dtype (bytes 0: integer
// frames, nothing to check).
struct FloatBits {
  int64_t bytes;
  uint64_t exponent;
};

// ORs into *mismatch (device int, zeroed by the caller) the kRejected* bits
// (csrc/replay_layout.h) of what is wrong with any row: next_obs[:-1] differing
// from obs[1:], an action outside [0, num_actions) (num_actions 0: negative ones
// only), a non-finite reward, a non-finite float observation.
cudaError_t replay_check_rows(const uint8_t* obs, const uint8_t* next_obs,
                              const int64_t* action, const float* reward, int64_t rows,
                              int64_t frame_bytes, int64_t frame_stack, int64_t num_actions,
                              FloatBits float_bits, int* mismatch, cudaStream_t stream);

// Row i of the inputs goes to environment env_ids[i] (distinct, checked by the caller).
// If *mismatch (device, set by replay_check_rows earlier on `stream`) is non-zero,
// nothing is written, rejected_adds[0] is incremented and the reasons ORed into
// rejected_adds[1]. With prioritized storage,
// `new_priority` (raw, one per row; null: the largest so far; a negative or
// non-finite one counts as null) sets the new transitions' priorities, and `ranges`
// (4 int64 per row, device scratch) carries each row's changed transition ranges to
// the tree refresh that follows in the same stream.
cudaError_t replay_add(ReplayStorage storage, const uint8_t* obs, const uint8_t* next_obs,
                       const int64_t* action, const float* reward, const bool* terminated,
                       const bool* truncated, const int64_t* env_ids, const int* mismatch,
                       int64_t* rejected_adds, const float* new_priority, double alpha,
                       double priority_eps, int64_t* ranges, int64_t rows, cudaStream_t stream);

// Reads the sampleable counts (or the trees) and `beta` (device memory) on the GPU:
// a captured sample stays valid as the buffer fills and beta changes. An empty
// buffer gives all-zero rows.
struct SampleOutputs {
  uint8_t* obs;
  uint8_t* next_obs;
  int64_t* action;
  float* reward;
  bool* terminated;
  float* discount;
  int64_t* index;
  float* weight;
};
cudaError_t replay_sample(ReplayStorage storage, const int64_t* random_bits, int64_t batch,
                          double gamma, const double* beta, SampleOutputs out,
                          cudaStream_t stream);

// Sets the priorities of the transitions `index` names, in one block: entries whose
// transition is no longer sampleable, whose index names no written transition, or
// whose priority is negative or not finite are skipped; of duplicates the largest
// priority wins. O(rows * log(leaves)) work, no host synchronization.
cudaError_t replay_update_priorities(PriorityTree tree, const int64_t* counters,
                                     int64_t num_envs, int64_t capacity, int64_t n_step,
                                     const int64_t* index, const float* new_priority,
                                     int64_t rows, double alpha, double priority_eps,
                                     cudaStream_t stream);

// Area taps in device memory (see csrc/preprocess_layout.h): rows in compressed
// form, columns padded to `col_taps` per output column of the window.
struct PreprocessPlan {
  int64_t num_frames, height, width;  // input
  bool channels_first;
  int64_t crop_top, crop_left;
  int64_t window_top, window_height, window_width;
  const int32_t* row_begin;  // indexed by resized row
  const int32_t* row_source;
  const float* row_weight;
  int64_t col_taps;
  const int32_t* col_source;  // [window_width * col_taps], crop-relative columns
  const float* col_weight;
};

cudaError_t preprocess_frames(const PreprocessPlan& plan, const uint8_t* frames,
                              const uint8_t* prev_frames, uint8_t* out, cudaStream_t stream);

// `out` (N, k, frame) = `stacks` with `frames` pushed in; never the same memory.
cudaError_t push_frames(const uint8_t* stacks, const uint8_t* frames, const bool* reset,
                        uint8_t* out, int64_t n, int64_t frame_stack, int64_t frame_bytes,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace dqnfast
