// CPU implementation of replay_update_priorities: checks every index and priority
// first (a rejected call changes nothing), then sets the priorities and refreshes
// the trees along each changed leaf's path (csrc/priority_tree.h).
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../replay_checks.h"

namespace dqnfast {
namespace {

void replay_update_priorities_cpu(at::Tensor priority, at::Tensor sum_tree, at::Tensor min_tree,
                                  at::Tensor max_priority, const at::Tensor& counters,
                                  const at::Tensor& index_in, const at::Tensor& new_priority_in,
                                  int64_t n_step, double alpha, double priority_eps) {
  check_settings(n_step, alpha, priority_eps);
  check_priority_storage(counters, priority, sum_tree, min_tree, max_priority, priority.size(1));
  check_index_input(index_in, counters.device());
  check_priority_input(new_priority_in, index_in.size(0), counters.device());
  const at::Tensor index = index_in.contiguous(), new_priority = new_priority_in.contiguous();
  const int64_t rows = index.size(0), num_envs = counters.size(0), capacity = priority.size(1);
  const int64_t* idx = index.data_ptr<int64_t>();
  const float* raw = new_priority.data_ptr<float>();
  const int64_t* cnt = counters.data_ptr<int64_t>();
  check_priority_values(raw, rows);
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK_VALUE(idx[i] >= 0, "index must be non-negative (as sample gives it), got ",
                      idx[i], " at position ", i);
    const int64_t env = idx[i] % num_envs, number = idx[i] / num_envs;
    TORCH_CHECK_VALUE(number < cnt[env * kNumCounters + kTransitionsWritten], "index ", idx[i],
                      " at position ", i, " names transition ", number, " of environment ", env,
                      ", which was never written");
  }

  const PriorityTree tree = priority_tree_of(sum_tree, min_tree, &priority, &max_priority);
  // The leaf of entry i, or -1 where its transition is no longer sampleable (overwritten
  // since it was sampled): such updates are ignored.
  std::vector<int64_t> leaves(rows, -1);
  std::vector<float> p(rows);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t env = idx[i] % num_envs, number = idx[i] / num_envs;
    const int64_t* c = cnt + env * kNumCounters;
    if (number < c[kFirstValid] || number >= sampleable_end(c, n_step)) continue;
    leaves[i] = env * capacity + number % capacity;
    p[i] = priority_of(raw[i], alpha, priority_eps);
    tree.priority[leaves[i]] = p[i];
  }
  // Duplicate indices: the largest of their priorities wins, as on the GPU.
  for (int64_t i = 0; i < rows; ++i) {
    if (leaves[i] < 0) continue;
    tree.priority[leaves[i]] = std::max(tree.priority[leaves[i]], p[i]);
    *tree.max_priority = std::max(*tree.max_priority, p[i]);
  }
  for (int64_t i = 0; i < rows; ++i) {
    if (leaves[i] < 0) continue;
    tree.sum[tree.num_leaves + leaves[i]] = tree.priority[leaves[i]];
    tree.min[tree.num_leaves + leaves[i]] = tree.priority[leaves[i]];
  }
  for (int64_t i = 0; i < rows; ++i)
    if (leaves[i] >= 0) refresh_ancestors(tree, leaves[i], leaves[i] + 1);
}

}  // namespace

TORCH_LIBRARY_IMPL(dqnfast, CPU, m) {
  m.impl("replay_update_priorities", &replay_update_priorities_cpu);
}

}  // namespace dqnfast
