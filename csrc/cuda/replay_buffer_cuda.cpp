// CUDA implementations of the replay ops: checks (shared with the CPU code),
// then the kernels of replay_kernels.cu on PyTorch's current stream. Built only
// with a CUDA build of torch.
#include "binding.h"

#include "../replay_checks.h"

namespace dqnfast {
namespace {

cuda::FloatBits float_bits_of(at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf: return {2, 0x7c00};
    case at::kBFloat16: return {2, 0x7f80};
    case at::kFloat: return {4, 0x7f800000};
    case at::kDouble: return {8, 0x7ff0000000000000};
    default: return {0, 0};
  }
}

void replay_add_cuda(at::Tensor frames, at::Tensor obs_pos, at::Tensor action, at::Tensor reward,
                     at::Tensor terminated, at::Tensor truncated, at::Tensor counters,
                     at::Tensor rejected_adds, const std::optional<at::Tensor>& priority,
                     const std::optional<at::Tensor>& sum_tree,
                     const std::optional<at::Tensor>& min_tree,
                     const std::optional<at::Tensor>& max_priority, const at::Tensor& obs_in,
                     const at::Tensor& next_obs_in, const at::Tensor& new_action,
                     const at::Tensor& new_reward, const at::Tensor& new_terminated,
                     const at::Tensor& new_truncated, const at::Tensor& env_ids,
                     const std::optional<at::Tensor>& new_priority_in, int64_t k, int64_t n_step,
                     double alpha, double priority_eps, int64_t num_actions) {
  check_storage(frames, obs_pos, action, reward, terminated, counters, k, &truncated);
  check_rejected_adds(rejected_adds, frames);
  check_add_inputs(frames, obs_in, next_obs_in, new_action, new_reward, new_terminated,
                   new_truncated, env_ids, k);
  check_settings(n_step, alpha, priority_eps);
  TORCH_CHECK_VALUE(num_actions >= 0, "num_actions must be at least 0 (0: unknown), got ",
                    num_actions);
  const bool prioritized = check_priority_storage(counters, priority, sum_tree, min_tree,
                                                  max_priority, obs_pos.size(1));
  TORCH_CHECK_VALUE(prioritized || !new_priority_in,
                    "priorities passed to add need a prioritized buffer");
  if (new_priority_in) check_priority_input(*new_priority_in, env_ids.size(0), frames.device());
  const c10::cuda::CUDAGuard guard(frames.device());
  // env_ids go up through pinned memory freed once the call returns: a replay of a
  // captured add would read whatever that memory holds by then.
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None,
              "replay_add cannot be captured in a CUDA graph: its env_ids are checked and "
              "uploaded on the host at each call");
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor obs = obs_in.contiguous(), next_obs = next_obs_in.contiguous();
  const int64_t rows = env_ids.size(0);
  const ReplayStorage s = replay_storage_of(frames, obs_pos, action, reward, terminated,
                                            truncated, counters, priority, sum_tree, min_tree,
                                            max_priority, k, n_step);

  // Nothing here waits for the GPU, so acting overlaps a queued update: the row
  // checks' flags are read by the add kernel, which then writes nothing and counts
  // the call (and why) in rejected_adds for the caller to report later.
  const at::Tensor mismatch = at::zeros({1}, frames.options().dtype(at::kInt));
  const at::Tensor checked_action = new_action.contiguous();
  const at::Tensor checked_reward = new_reward.contiguous();
  check_launch(cuda::replay_check_rows(static_cast<const uint8_t*>(obs.data_ptr()),
                                       static_cast<const uint8_t*>(next_obs.data_ptr()),
                                       checked_action.data_ptr<int64_t>(),
                                       checked_reward.data_ptr<float>(), rows, s.frame_bytes, k,
                                       num_actions, float_bits_of(frames.scalar_type()),
                                       mismatch.data_ptr<int>(), stream),
               "replay_check_rows");
  // A private pinned copy: the upload runs later, and the caller may reuse env_ids.
  at::Tensor pinned_ids = at::empty({rows}, env_ids.options().pinned_memory(true));
  pinned_ids.copy_(env_ids);
  const at::Tensor ids = pinned_ids.to(frames.device(), at::kLong, /*non_blocking=*/true);
  const at::Tensor new_priority = new_priority_in ? new_priority_in->contiguous() : at::Tensor();
  // Each row's changed transition ranges, for the tree refresh after the add.
  const at::Tensor ranges = prioritized ? at::empty({rows, 4}, counters.options()) : at::Tensor();
  check_launch(cuda::replay_add(s, static_cast<const uint8_t*>(obs.data_ptr()),
                                static_cast<const uint8_t*>(next_obs.data_ptr()),
                                checked_action.data_ptr<int64_t>(),
                                checked_reward.data_ptr<float>(),
                                new_terminated.contiguous().data_ptr<bool>(),
                                new_truncated.contiguous().data_ptr<bool>(),
                                ids.data_ptr<int64_t>(), mismatch.data_ptr<int>(),
                                rejected_adds.data_ptr<int64_t>(),
                                new_priority.defined() ? new_priority.data_ptr<float>() : nullptr,
                                alpha, priority_eps,
                                ranges.defined() ? ranges.data_ptr<int64_t>() : nullptr, rows,
                                stream),
               "replay_add");
}

void replay_sample_cuda(const at::Tensor& frames, const at::Tensor& obs_pos,
                        const at::Tensor& action, const at::Tensor& reward,
                        const at::Tensor& terminated, const at::Tensor& truncated,
                        const at::Tensor& counters, const std::optional<at::Tensor>& sum_tree,
                        const std::optional<at::Tensor>& min_tree, const at::Tensor& random_bits,
                        int64_t k, int64_t n_step, double gamma, const at::Tensor& beta, at::Tensor out_obs,
                        at::Tensor out_next_obs, at::Tensor out_action, at::Tensor out_reward,
                        at::Tensor out_terminated, at::Tensor out_discount, at::Tensor out_index,
                        at::Tensor out_weight) {
  check_storage(frames, obs_pos, action, reward, terminated, counters, k, &truncated);
  check_sample_outputs(frames, random_bits, out_obs, out_next_obs, out_action, out_reward,
                       out_terminated, out_discount, out_index, out_weight, k);
  check_sample_settings(n_step, gamma, beta, frames.device());
  check_sample_trees(counters, sum_tree, min_tree, obs_pos.size(1));
  const c10::cuda::CUDAGuard guard(frames.device());
  // No emptiness check here: it would wait for the GPU (ReplayBuffer.sample checks).
  const ReplayStorage s = replay_storage_of(frames, obs_pos, action, reward, terminated,
                                            truncated, counters, std::nullopt, sum_tree,
                                            min_tree, std::nullopt, k, n_step);
  const cuda::SampleOutputs out{static_cast<uint8_t*>(out_obs.data_ptr()),
                                static_cast<uint8_t*>(out_next_obs.data_ptr()),
                                out_action.data_ptr<int64_t>(),
                                out_reward.data_ptr<float>(),
                                out_terminated.data_ptr<bool>(),
                                out_discount.data_ptr<float>(),
                                out_index.data_ptr<int64_t>(),
                                out_weight.data_ptr<float>()};
  check_launch(cuda::replay_sample(s, random_bits.contiguous().data_ptr<int64_t>(),
                                   random_bits.size(0), gamma,
                                   beta.contiguous().data_ptr<double>(), out,
                                   at::cuda::getCurrentCUDAStream()),
               "replay_sample");
}

}  // namespace

TORCH_LIBRARY_IMPL(dqnfast, CUDA, m) {
  m.impl("replay_add", &replay_add_cuda);
  m.impl("replay_sample", &replay_sample_cuda);
}

}  // namespace dqnfast
