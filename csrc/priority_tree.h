// Sum and min trees of proportional prioritized replay, shared by the CPU code
// and the CUDA kernels (plain C++, like replay_layout.h).
//
// One tree over all environments' transition slots: leaf e * C + s is slot s of
// environment e; the leaf count is padded to a power of two P. Node i has children
// 2i and 2i + 1, the root is node 1 and leaf l is node P + l. A leaf holds its
// slot's priority while that transition is sampleable and 0 (sum tree) or +inf
// (min tree) otherwise; the priority a slot was given is kept in `priority` (E, C)
// meanwhile. Parents are always recomputed from their children, never adjusted by
// differences: no drift, and the same leaves give the same tree bit for bit on
// the CPU and the GPU. Sums are float64 (a million float32 leaves stay exact
// enough for the stratified descent), priorities and minima float32.
#pragma once

#include <cmath>
#include <cstdint>

#include "replay_layout.h"

namespace dqnfast {

struct PriorityTree {
  double* sum;        // [2P]
  float* min;         // [2P]
  float* priority;    // [E * C], the priority each slot's transition was given
  float* max_priority;  // [1], the largest priority given so far (1 at first)
  int64_t num_leaves;   // P, a power of two >= E * C
};

// The smallest power of two >= n (n >= 1).
DQNFAST_HOST_DEVICE inline int64_t tree_leaves_for(int64_t n) {
  int64_t leaves = 1;
  while (leaves < n) leaves *= 2;
  return leaves;
}

// log2 of a power of two.
DQNFAST_HOST_DEVICE inline int tree_depth(int64_t num_leaves) {
  int depth = 0;
  while ((int64_t{1} << depth) < num_leaves) ++depth;
  return depth;
}

// p = (|raw| + eps) ^ alpha, computed in float64 and rounded once to float32.
DQNFAST_HOST_DEVICE inline float priority_of(float raw, double alpha, double eps) {
  return static_cast<float>(pow(add_rn(fabs(static_cast<double>(raw)), eps), alpha));
}

// Whether a priority passed in is usable: finite and not negative (NaN fails both).
DQNFAST_HOST_DEVICE inline bool priority_is_valid(float raw) {
  return raw >= 0.0f && raw <= 3.402823466e38f;
}

// Sets leaf e * C + slot from the counters of environment e (`c`).
DQNFAST_HOST_DEVICE inline void refresh_leaf(const PriorityTree& t, const int64_t* c,
                                             int64_t env, int64_t slot, int64_t capacity_per_env,
                                             int64_t n_step) {
  const int64_t leaf = env * capacity_per_env + slot;
  const int64_t n = transition_in_slot(c, slot, capacity_per_env);
  const bool sampleable = n >= c[kFirstValid] && n < sampleable_end(c, n_step);
  t.sum[t.num_leaves + leaf] = sampleable ? static_cast<double>(t.priority[leaf]) : 0.0;
  t.min[t.num_leaves + leaf] = sampleable ? t.priority[leaf] : INFINITY;
}

DQNFAST_HOST_DEVICE inline void refresh_node(const PriorityTree& t, int64_t node) {
  t.sum[node] = add_rn(t.sum[2 * node], t.sum[2 * node + 1]);
  const float left = t.min[2 * node], right = t.min[2 * node + 1];
  t.min[node] = left < right ? left : right;
}

// Recomputes every ancestor of leaves [begin, end), level by level (host code; the
// GPU does the same with one thread per node of a level).
inline void refresh_ancestors(const PriorityTree& t, int64_t begin, int64_t end) {
  for (int64_t lo = (t.num_leaves + begin) / 2, hi = (t.num_leaves + end - 1) / 2; lo >= 1;
       lo /= 2, hi /= 2) {
    for (int64_t node = lo; node <= hi; ++node) refresh_node(t, node);
    if (lo == 1) break;
  }
}

// The slots of transitions [first, end) of one environment as at most two runs of
// leaves [begin, end) (the ring may wrap).
struct LeafRuns {
  int64_t begin[2], end[2];
  int count;
};

DQNFAST_HOST_DEVICE inline LeafRuns leaf_runs(int64_t env, int64_t first, int64_t end,
                                              int64_t capacity_per_env) {
  const int64_t base = env * capacity_per_env;
  if (end <= first) return {{0, 0}, {0, 0}, 0};
  if (end - first >= capacity_per_env) return {{base, 0}, {base + capacity_per_env, 0}, 1};
  const int64_t s0 = first % capacity_per_env, s1 = s0 + (end - first);
  if (s1 <= capacity_per_env) return {{base + s0, 0}, {base + s1, 0}, 1};
  return {{base + s0, base}, {base + capacity_per_env, base + s1 - capacity_per_env}, 2};
}

// One level of the descent from the root to the leaf whose prefix of the total mass
// holds `target`. Goes left whenever the right subtree is empty, so it ends on a
// leaf of positive priority whenever the root is positive, whatever the rounding.
DQNFAST_HOST_DEVICE inline void descend_step(const PriorityTree& t, int64_t& node,
                                             double& target) {
  const double left = t.sum[2 * node];
  if (target < left || t.sum[2 * node + 1] == 0.0) {
    node = 2 * node;
  } else {
    target = add_rn(target, -left);
    node = 2 * node + 1;
  }
}

// The leaf of `target` (see descend_step).
DQNFAST_HOST_DEVICE inline int64_t descend(const PriorityTree& t, double target) {
  int64_t node = 1;
  while (node < t.num_leaves) descend_step(t, node, target);
  return node - t.num_leaves;
}

// Stratified sampling: draw b of `batch` lands in the b-th of `batch` equal slices
// of the total mass, at the uniform offset taken from the top 53 of the 62 random
// bits.
DQNFAST_HOST_DEVICE inline double stratified_target(const PriorityTree& t, int64_t b,
                                                    int64_t batch, int64_t random_bits) {
  const double u = static_cast<double>(random_bits >> 9) * 0x1p-53;
  return mul_rn(add_rn(static_cast<double>(b), u), t.sum[1] / static_cast<double>(batch));
}

// Importance weight of a leaf of priority p, relative to the largest the buffer
// could give: (N P(i))^-beta / max_j (N P(j))^-beta = (min_j p_j / p)^beta.
DQNFAST_HOST_DEVICE inline float importance_weight(const PriorityTree& t, double p, double beta) {
  return static_cast<float>(pow(static_cast<double>(t.min[1]) / p, beta));
}

}  // namespace dqnfast
