// CUDA kernel of replay_update_priorities: one block, so that the phases below
// can be separated by barriers instead of atomics on the tree (csrc/priority_tree.h).
#include "kernels.h"

namespace dqnfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// The leaf entry i updates, or -1 to skip it (see kernels.h).
__device__ int64_t leaf_of_entry(const int64_t* counters, int64_t num_envs, int64_t capacity,
                                 int64_t n_step, int64_t index, float raw) {
  if (index < 0 || !priority_is_valid(raw)) return -1;
  const int64_t env = index % num_envs, number = index / num_envs;
  const int64_t* c = counters + env * kNumCounters;
  if (number < c[kFirstValid] || number >= sampleable_end(c, n_step)) return -1;
  return env * capacity + number % capacity;
}

__global__ void update_priorities_kernel(PriorityTree t, const int64_t* counters,
                                         int64_t num_envs, int64_t capacity, int64_t n_step,
                                         const int64_t* index, const float* new_priority,
                                         int64_t rows, double alpha, double priority_eps) {
  // 1. Each entry stores its priority (of duplicates, one store lands)...
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    const int64_t leaf = leaf_of_entry(counters, num_envs, capacity, n_step, index[i], new_priority[i]);
    if (leaf >= 0) t.priority[leaf] = priority_of(new_priority[i], alpha, priority_eps);
  }
  __syncthreads();
  // 2. ...then raises it to its own: the largest of the duplicates wins, whichever
  // landed. Priorities are positive, and positive floats order as their bits do.
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    const int64_t leaf = leaf_of_entry(counters, num_envs, capacity, n_step, index[i], new_priority[i]);
    if (leaf < 0) continue;
    const int bits = __float_as_int(priority_of(new_priority[i], alpha, priority_eps));
    atomicMax(reinterpret_cast<int*>(t.priority + leaf), bits);
    atomicMax(reinterpret_cast<int*>(t.max_priority), bits);
  }
  __syncthreads();
  // 3. The leaves (sampleable transitions only, so the priority is the leaf)...
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    const int64_t leaf = leaf_of_entry(counters, num_envs, capacity, n_step, index[i], new_priority[i]);
    if (leaf < 0) continue;
    t.sum[t.num_leaves + leaf] = t.priority[leaf];
    t.min[t.num_leaves + leaf] = t.priority[leaf];
  }
  __syncthreads();
  // 4. ...and their ancestors, one level per barrier, each from its final children.
  for (int level = 1, depth = tree_depth(t.num_leaves); level <= depth; ++level) {
    for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
      const int64_t leaf = leaf_of_entry(counters, num_envs, capacity, n_step, index[i], new_priority[i]);
      if (leaf >= 0) refresh_node(t, (t.num_leaves + leaf) >> level);
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t replay_update_priorities(PriorityTree tree, const int64_t* counters,
                                     int64_t num_envs, int64_t capacity, int64_t n_step,
                                     const int64_t* index, const float* new_priority,
                                     int64_t rows, double alpha, double priority_eps,
                                     cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  update_priorities_kernel<<<1, kThreads, 0, stream>>>(tree, counters, num_envs, capacity, n_step,
                                                       index, new_priority, rows, alpha,
                                                       priority_eps);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace dqnfast
