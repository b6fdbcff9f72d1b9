// CUDA implementation of replay_update_priorities: shape checks only (the values
// stay on the GPU; the kernel skips invalid entries), then one kernel.
#include "binding.h"

#include "../replay_checks.h"

namespace dqnfast {
namespace {

void replay_update_priorities_cuda(at::Tensor priority, at::Tensor sum_tree, at::Tensor min_tree,
                                   at::Tensor max_priority, const at::Tensor& counters,
                                   const at::Tensor& index, const at::Tensor& new_priority,
                                   int64_t n_step, double alpha, double priority_eps) {
  check_settings(n_step, alpha, priority_eps);
  check_priority_storage(counters, priority, sum_tree, min_tree, max_priority, priority.size(1));
  check_index_input(index, counters.device());
  check_priority_input(new_priority, index.size(0), counters.device());
  const c10::cuda::CUDAGuard guard(counters.device());
  check_launch(cuda::replay_update_priorities(
                   priority_tree_of(sum_tree, min_tree, &priority, &max_priority),
                   counters.data_ptr<int64_t>(), counters.size(0), priority.size(1), n_step,
                   index.contiguous().data_ptr<int64_t>(),
                   new_priority.contiguous().data_ptr<float>(), index.size(0), alpha,
                   priority_eps, at::cuda::getCurrentCUDAStream()),
               "replay_update_priorities");
}

}  // namespace

TORCH_LIBRARY_IMPL(dqnfast, CUDA, m) {
  m.impl("replay_update_priorities", &replay_update_priorities_cuda);
}

}  // namespace dqnfast
