// Argument checks shared by the CPU and CUDA implementations of the replay
// ops. Every check runs before anything is written, so a rejected call leaves
// the buffer unchanged. User-facing mistakes raise ValueError / TypeError.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "priority_tree.h"
#include "replay_layout.h"
#include "replay_storage.h"

namespace dqnfast {

// "torch.uint8", as Python spells the dtype.
inline std::string dtype_name(at::ScalarType dtype) {
  return "torch." + std::string(c10::getDtypeNames(dtype).first);
}

// Storage shape is (E, F, *frame_shape); an observation is (k, *frame_shape),
// or just frame_shape when k == 1.
inline std::vector<int64_t> observation_batch_shape(const at::Tensor& frames,
                                                    int64_t batch,
                                                    int64_t frame_stack) {
  std::vector<int64_t> shape{batch};
  if (frame_stack > 1) shape.push_back(frame_stack);
  for (int64_t d = 2; d < frames.dim(); ++d) shape.push_back(frames.size(d));
  return shape;
}

inline void check_storage(const at::Tensor& frames, const at::Tensor& obs_pos,
                          const at::Tensor& action, const at::Tensor& reward,
                          const at::Tensor& terminated, const at::Tensor& counters,
                          int64_t frame_stack, const at::Tensor* truncated = nullptr) {
  TORCH_CHECK(frames.dim() >= 2 && frames.is_contiguous(),
              "replay storage: expected contiguous frames of shape (envs, frames, ...), got ",
              frames.sizes());
  const int64_t num_envs = frames.size(0);
  TORCH_CHECK_VALUE(frame_stack >= 1, "frame_stack must be at least 1, got ", frame_stack);
  TORCH_CHECK_VALUE(frames.size(1) >= frame_stack + 1,
                    "replay storage: need at least frame_stack + 1 = ", frame_stack + 1,
                    " frames per environment, got ", frames.size(1));
  auto check_ring = [&](const at::Tensor& t, at::ScalarType dtype, const char* name) {
    TORCH_CHECK(t.scalar_type() == dtype && t.dim() == 2 && t.size(0) == num_envs &&
                    t.is_contiguous() && t.device() == frames.device(),
                "replay storage: expected contiguous ", dtype, " ", name,
                " of shape (", num_envs, ", capacity) on ", frames.device(), ", got ",
                t.scalar_type(), " ", t.sizes(), " on ", t.device());
  };
  check_ring(obs_pos, at::kLong, "obs_pos");
  check_ring(action, at::kLong, "action");
  check_ring(reward, at::kFloat, "reward");
  check_ring(terminated, at::kBool, "terminated");
  if (truncated != nullptr) check_ring(*truncated, at::kBool, "truncated");
  TORCH_CHECK(obs_pos.sizes() == action.sizes() && obs_pos.sizes() == reward.sizes() &&
                  obs_pos.sizes() == terminated.sizes() && obs_pos.size(1) >= 1 &&
                  (truncated == nullptr || truncated->sizes() == obs_pos.sizes()),
              "replay storage: transition rings disagree in shape");
  TORCH_CHECK(counters.scalar_type() == at::kLong && counters.is_contiguous() &&
                  counters.sizes() == at::IntArrayRef({num_envs, kNumCounters}) &&
                  counters.device() == frames.device(),
              "replay storage: expected int64 counters of shape (", num_envs, ", ",
              static_cast<int64_t>(kNumCounters), "), got ", counters.scalar_type(), " ",
              counters.sizes());
}

// The count of calls replay_add rejected on the GPU and the bits of why (see
// csrc/ops.cpp).
inline void check_rejected_adds(const at::Tensor& rejected_adds, const at::Tensor& frames) {
  TORCH_CHECK(rejected_adds.scalar_type() == at::kLong && rejected_adds.numel() == 2 &&
                  rejected_adds.is_contiguous() && rejected_adds.device() == frames.device(),
              "replay storage: expected two int64 rejected_adds (count, reasons) on ",
              frames.device(), ", got ",
              rejected_adds.scalar_type(), " ", rejected_adds.sizes(), " on ",
              rejected_adds.device());
}

// action (int64), reward (float32), terminated and truncated (bool): `rows` each, on
// the storage's device.
inline void check_row_fields(const at::Tensor& frames, const at::Tensor& new_action,
                             const at::Tensor& new_reward, const at::Tensor& new_terminated,
                             const at::Tensor& new_truncated, int64_t rows) {
  struct Field {
    const at::Tensor* tensor;
    at::ScalarType dtype;
    const char* name;
  };
  for (const Field& f : {Field{&new_action, at::kLong, "action"},
                         Field{&new_reward, at::kFloat, "reward"},
                         Field{&new_terminated, at::kBool, "terminated"},
                         Field{&new_truncated, at::kBool, "truncated"}}) {
    TORCH_CHECK_TYPE(f.tensor->scalar_type() == f.dtype, "expected ", dtype_name(f.dtype), " ",
                     f.name, ", got ", dtype_name(f.tensor->scalar_type()));
    TORCH_CHECK_VALUE(f.tensor->dim() == 1 && f.tensor->size(0) == rows, "expected ",
                      f.name, " of shape [", rows, "] (one per transition added), got ",
                      f.tensor->sizes());
    TORCH_CHECK_VALUE(f.tensor->device() == frames.device(), "expected ", f.name, " on ",
                      frames.device(), ", got ", f.tensor->device());
  }
}

// Checks one batch of per-environment inputs to replay_add, one row per entry
// of env_ids (checked on the host: distinct environment indices).
inline void check_add_inputs(const at::Tensor& frames, const at::Tensor& obs,
                             const at::Tensor& next_obs, const at::Tensor& new_action,
                             const at::Tensor& new_reward, const at::Tensor& new_terminated,
                             const at::Tensor& new_truncated, const at::Tensor& env_ids,
                             int64_t frame_stack) {
  const int64_t total_envs = frames.size(0);
  TORCH_CHECK_TYPE(env_ids.scalar_type() == at::kLong, "expected torch.int64 env_ids, got ",
                   dtype_name(env_ids.scalar_type()));
  TORCH_CHECK_VALUE(env_ids.dim() == 1 && env_ids.size(0) <= total_envs && env_ids.is_cpu(),
                    "expected env_ids of shape (n,) with n <= ", total_envs,
                    " on the CPU, got ", env_ids.sizes(), " on ", env_ids.device());
  const at::Tensor ids = env_ids.contiguous();
  std::vector<bool> taken(total_envs, false);
  for (int64_t i = 0; i < ids.size(0); ++i) {
    const int64_t e = ids.data_ptr<int64_t>()[i];
    TORCH_CHECK_VALUE(e >= 0 && e < total_envs, "env_ids must lie in [0, ", total_envs,
                      "), got ", e);
    TORCH_CHECK_VALUE(!taken[e], "env_ids must be distinct, got ", e, " twice");
    taken[e] = true;
  }
  const int64_t num_envs = ids.size(0);
  const auto expected = observation_batch_shape(frames, num_envs, frame_stack);
  for (const at::Tensor* t : {&obs, &next_obs}) {
    const char* name = t == &obs ? "obs" : "next_obs";
    TORCH_CHECK_TYPE(t->scalar_type() == frames.scalar_type(), "expected ",
                     dtype_name(frames.scalar_type()), " ", name, ", got ",
                     dtype_name(t->scalar_type()));
    TORCH_CHECK_VALUE(t->sizes() == at::IntArrayRef(expected), "expected ", name,
                      " of shape ", at::IntArrayRef(expected), " (one row per environment added, then obs_shape), got ",
                      t->sizes());
    TORCH_CHECK_VALUE(t->device() == frames.device(), "expected ", name, " on ",
                      frames.device(), ", got ", t->device());
  }
  check_row_fields(frames, new_action, new_reward, new_terminated, new_truncated, num_envs);
}

// Checks the chunk inputs of replay_add_frames: `rows` transitions, row i with obs
// chunk_frames[p : p+k] and next_obs chunk_frames[p+1 : p+k+1], p = chunk_obs_pos[i],
// added to environment env_ids[i] (rows of one environment in stream order).
inline void check_add_frames_inputs(const at::Tensor& frames, const at::Tensor& chunk_frames,
                                    const at::Tensor& chunk_obs_pos,
                                    const at::Tensor& new_action, const at::Tensor& new_reward,
                                    const at::Tensor& new_terminated,
                                    const at::Tensor& new_truncated, const at::Tensor& env_ids,
                                    int64_t frame_stack) {
  const int64_t total_envs = frames.size(0);
  std::vector<int64_t> frame_shape{-1};
  for (int64_t d = 2; d < frames.dim(); ++d) frame_shape.push_back(frames.size(d));
  TORCH_CHECK_TYPE(chunk_frames.scalar_type() == frames.scalar_type(), "expected ",
                   dtype_name(frames.scalar_type()), " frames, got ",
                   dtype_name(chunk_frames.scalar_type()));
  bool shape_ok = chunk_frames.dim() == frames.dim() - 1;
  for (int64_t d = 1; shape_ok && d < chunk_frames.dim(); ++d)
    shape_ok = chunk_frames.size(d) == frame_shape[d];
  TORCH_CHECK_VALUE(shape_ok && chunk_frames.device() == frames.device(),
                    "expected frames of shape ", at::IntArrayRef(frame_shape),
                    " (any number of frames, then the frame shape) on ", frames.device(),
                    ", got ", chunk_frames.sizes(), " on ", chunk_frames.device());
  const int64_t num_frames = chunk_frames.size(0);
  for (const at::Tensor* t : {&chunk_obs_pos, &env_ids}) {
    const char* name = t == &env_ids ? "env_ids" : "obs_pos";
    TORCH_CHECK_TYPE(t->scalar_type() == at::kLong, "expected torch.int64 ", name, ", got ",
                     dtype_name(t->scalar_type()));
    TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == env_ids.size(0) && t->is_cpu(),
                      "expected ", name, " of shape [", env_ids.size(0),
                      "] (one per transition) on the CPU, got ", t->sizes(), " on ",
                      t->device());
  }
  const at::Tensor ids = env_ids.contiguous(), positions = chunk_obs_pos.contiguous();
  for (int64_t i = 0; i < ids.size(0); ++i) {
    const int64_t e = ids.data_ptr<int64_t>()[i], p = positions.data_ptr<int64_t>()[i];
    TORCH_CHECK_VALUE(e >= 0 && e < total_envs, "env_ids must lie in [0, ", total_envs,
                      "), got ", e, " at position ", i);
    TORCH_CHECK_VALUE(p >= 0 && p < num_frames - frame_stack, "obs_pos must lie in [0, ",
                      num_frames - frame_stack, ") (obs and next_obs within the ", num_frames,
                      " frames), got ", p, " at position ", i);
  }
  check_row_fields(frames, new_action, new_reward, new_terminated, new_truncated, ids.size(0));
}

inline void check_sample_outputs(const at::Tensor& frames, const at::Tensor& random_bits,
                                 const at::Tensor& out_obs, const at::Tensor& out_next_obs,
                                 const at::Tensor& out_action, const at::Tensor& out_reward,
                                 const at::Tensor& out_terminated,
                                 const at::Tensor& out_discount, const at::Tensor& out_index,
                                 const at::Tensor& out_weight, int64_t frame_stack) {
  TORCH_CHECK_TYPE(random_bits.scalar_type() == at::kLong, "expected int64 random_bits, got ",
                   dtype_name(random_bits.scalar_type()));
  TORCH_CHECK_VALUE(random_bits.dim() == 1 && random_bits.device() == frames.device(),
                    "expected random_bits of shape (batch,) on ", frames.device(), ", got ",
                    random_bits.sizes(), " on ", random_bits.device());
  const int64_t batch = random_bits.size(0);
  const auto expected = observation_batch_shape(frames, batch, frame_stack);
  for (const at::Tensor* t : {&out_obs, &out_next_obs}) {
    TORCH_CHECK_VALUE(t->scalar_type() == frames.scalar_type() &&
                          t->sizes() == at::IntArrayRef(expected) && t->is_contiguous() &&
                          t->device() == frames.device(),
                      "expected contiguous ", dtype_name(frames.scalar_type()), " output of shape ",
                      at::IntArrayRef(expected), " on ", frames.device(), ", got ",
                      dtype_name(t->scalar_type()), " ", t->sizes(), " on ", t->device());
  }
  struct Field {
    const at::Tensor* tensor;
    at::ScalarType dtype;
  };
  for (const Field& f : {Field{&out_action, at::kLong}, Field{&out_reward, at::kFloat},
                         Field{&out_terminated, at::kBool}, Field{&out_discount, at::kFloat},
                         Field{&out_index, at::kLong}, Field{&out_weight, at::kFloat}}) {
    TORCH_CHECK_VALUE(f.tensor->scalar_type() == f.dtype && f.tensor->dim() == 1 &&
                          f.tensor->size(0) == batch && f.tensor->is_contiguous() &&
                          f.tensor->device() == frames.device(),
                      "expected contiguous ", dtype_name(f.dtype), " output of shape [", batch,
                      "] on ", frames.device(), ", got ", dtype_name(f.tensor->scalar_type()), " ",
                      f.tensor->sizes(), " on ", f.tensor->device());
  }
}

// The values of the rows an add takes, read on the host (CPU storage): actions in
// [0, num_actions) (num_actions 0: no upper bound is known) and finite rewards.
inline void check_row_values(const int64_t* action, const float* reward, int64_t rows,
                             int64_t num_actions) {
  TORCH_CHECK_VALUE(num_actions >= 0, "num_actions must be at least 0 (0: unknown), got ",
                    num_actions);
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK_VALUE(action[i] >= 0 && (num_actions == 0 || action[i] < num_actions),
                      "actions must lie in [0, ",
                      num_actions == 0 ? std::string("inf") : std::to_string(num_actions),
                      "), got ", action[i], " at row ", i);
    TORCH_CHECK_VALUE(std::isfinite(reward[i]), "rewards must be finite, got ", reward[i],
                      " at row ", i);
  }
}

// Observations of a floating dtype must be finite (integer frames always are).
inline void check_finite_observations(const at::Tensor& observations, const char* name) {
  if (!at::isFloatingType(observations.scalar_type()) || observations.numel() == 0) return;
  const at::Tensor values = observations.contiguous();
  const int64_t row_size = values.numel() / values.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(),
                                  "check_finite_observations", [&] {
    const scalar_t* data = values.data_ptr<scalar_t>();
    for (int64_t i = 0; i < values.numel(); ++i)
      TORCH_CHECK_VALUE(std::isfinite(static_cast<double>(data[i])), name,
                        " must be finite, got ", static_cast<double>(data[i]), " in row ",
                        i / row_size);
  });
}

// The return and priority settings every op that reads them checks alike.
inline void check_settings(int64_t n_step, double alpha, double priority_eps) {
  TORCH_CHECK_VALUE(n_step >= 1, "n_step must be at least 1, got ", n_step);
  TORCH_CHECK_VALUE(alpha >= 0.0 && alpha <= 1.0, "alpha must be in [0, 1], got ", alpha);
  TORCH_CHECK_VALUE(priority_eps > 0.0 && std::isfinite(priority_eps),
                    "priority_eps must be positive and finite, got ", priority_eps);
}

// beta's value is checked where it is set (ReplayBuffer.beta): reading it here
// would make the GPU op wait.
inline void check_sample_settings(int64_t n_step, double gamma, const at::Tensor& beta,
                                  const at::Device& device) {
  TORCH_CHECK_VALUE(n_step >= 1, "n_step must be at least 1, got ", n_step);
  TORCH_CHECK_VALUE(gamma >= 0.0 && gamma <= 1.0, "gamma must be in [0, 1], got ", gamma);
  TORCH_CHECK_VALUE(beta.scalar_type() == at::kDouble && beta.numel() == 1 &&
                        beta.device() == device,
                    "expected beta as a float64 tensor of one element on ", device, ", got ",
                    dtype_name(beta.scalar_type()), " ", beta.sizes(), " on ", beta.device());
}

// Either all four priority tensors or none (a buffer without prioritized replay).
inline bool check_priority_storage(const at::Tensor& counters,
                                   const std::optional<at::Tensor>& priority,
                                   const std::optional<at::Tensor>& sum_tree,
                                   const std::optional<at::Tensor>& min_tree,
                                   const std::optional<at::Tensor>& max_priority,
                                   int64_t capacity_per_env) {
  const bool any = priority || sum_tree || min_tree || max_priority;
  TORCH_CHECK(!any || (priority && sum_tree && min_tree && max_priority),
              "replay storage: priority, sum_tree, min_tree and max_priority go together");
  if (!any) return false;
  const int64_t num_envs = counters.size(0);
  const int64_t nodes = 2 * tree_leaves_for(num_envs * capacity_per_env);
  auto check = [&](const at::Tensor& t, at::ScalarType dtype, at::IntArrayRef shape,
                   const char* name) {
    TORCH_CHECK(t.scalar_type() == dtype && t.sizes() == shape && t.is_contiguous() &&
                    t.device() == counters.device(),
                "replay storage: expected contiguous ", dtype, " ", name, " of shape ", shape,
                " on ", counters.device(), ", got ", t.scalar_type(), " ", t.sizes(), " on ",
                t.device());
  };
  check(*priority, at::kFloat, {num_envs, capacity_per_env}, "priority");
  check(*sum_tree, at::kDouble, {nodes}, "sum_tree");
  check(*min_tree, at::kFloat, {nodes}, "min_tree");
  check(*max_priority, at::kFloat, {1}, "max_priority");
  return true;
}

// The trees sample reads: both or neither (uniform sampling).
inline bool check_sample_trees(const at::Tensor& counters, const std::optional<at::Tensor>& sum_tree,
                               const std::optional<at::Tensor>& min_tree,
                               int64_t capacity_per_env) {
  TORCH_CHECK(sum_tree.has_value() == min_tree.has_value(),
              "replay storage: sum_tree and min_tree go together");
  if (!sum_tree) return false;
  const int64_t nodes = 2 * tree_leaves_for(counters.size(0) * capacity_per_env);
  TORCH_CHECK(sum_tree->scalar_type() == at::kDouble && min_tree->scalar_type() == at::kFloat &&
                  sum_tree->sizes() == at::IntArrayRef({nodes}) &&
                  min_tree->sizes() == at::IntArrayRef({nodes}) && sum_tree->is_contiguous() &&
                  min_tree->is_contiguous() && sum_tree->device() == counters.device() &&
                  min_tree->device() == counters.device(),
              "replay storage: expected contiguous float64 sum_tree and float32 min_tree of "
              "shape [", nodes, "] on ", counters.device(), ", got ", sum_tree->scalar_type(),
              " ", sum_tree->sizes(), " and ", min_tree->scalar_type(), " ", min_tree->sizes());
  return true;
}

// A view of checked priority storage (sample passes no priority or max_priority).
inline PriorityTree priority_tree_of(const at::Tensor& sum_tree, const at::Tensor& min_tree,
                                     const at::Tensor* priority = nullptr,
                                     const at::Tensor* max_priority = nullptr) {
  return {sum_tree.data_ptr<double>(), min_tree.data_ptr<float>(),
          priority ? priority->data_ptr<float>() : nullptr,
          max_priority ? max_priority->data_ptr<float>() : nullptr, sum_tree.size(0) / 2};
}

// The storage tensors (checked by check_storage, and the priority ones by
// check_priority_storage or check_sample_trees) as the view the kernels take. Without
// sum_tree the view has no trees; without priority/max_priority (sampling) the tree
// has no per-slot priorities.
inline ReplayStorage replay_storage_of(
    const at::Tensor& frames, const at::Tensor& obs_pos, const at::Tensor& action,
    const at::Tensor& reward, const at::Tensor& terminated, const at::Tensor& truncated,
    const at::Tensor& counters, const std::optional<at::Tensor>& priority,
    const std::optional<at::Tensor>& sum_tree, const std::optional<at::Tensor>& min_tree,
    const std::optional<at::Tensor>& max_priority, int64_t frame_stack, int64_t n_step) {
  const int64_t num_envs = frames.size(0), frame_capacity = frames.size(1);
  PriorityTree tree{};
  if (sum_tree && min_tree)
    tree = priority_tree_of(*sum_tree, *min_tree, priority ? &*priority : nullptr,
                            max_priority ? &*max_priority : nullptr);
  return {static_cast<uint8_t*>(frames.data_ptr()),
          obs_pos.data_ptr<int64_t>(),
          action.data_ptr<int64_t>(),
          reward.data_ptr<float>(),
          terminated.data_ptr<bool>(),
          truncated.data_ptr<bool>(),
          counters.data_ptr<int64_t>(),
          num_envs,
          obs_pos.size(1),
          frame_capacity,
          frames.numel() / std::max<int64_t>(num_envs * frame_capacity, 1) * frames.element_size(),
          frame_stack,
          n_step,
          tree};
}

// Priorities passed in (to add or update_priorities): float32 of shape (rows,) on
// the storage device. Their values are checked by the CPU kernels only: reading
// them on the host would make the GPU ops wait.
inline void check_priority_input(const at::Tensor& priority, int64_t rows,
                                 const at::Device& device) {
  TORCH_CHECK_TYPE(priority.scalar_type() == at::kFloat, "expected torch.float32 priority, got ",
                   dtype_name(priority.scalar_type()));
  TORCH_CHECK_VALUE(priority.dim() == 1 && priority.size(0) == rows && priority.device() == device,
                    "expected priority of shape [", rows, "] on ", device, ", got ",
                    priority.sizes(), " on ", priority.device());
}

// The batch indices update_priorities takes: int64 of shape (rows,) on the storage device.
inline void check_index_input(const at::Tensor& index, const at::Device& device) {
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong, "expected torch.int64 index, got ",
                   dtype_name(index.scalar_type()));
  TORCH_CHECK_VALUE(index.dim() == 1 && index.device() == device,
                    "expected index of shape (batch,) on ", device, ", got ", index.sizes(),
                    " on ", index.device());
}

// Raises on the first priority that is negative, infinite or NaN.
inline void check_priority_values(const float* priority, int64_t rows) {
  for (int64_t i = 0; i < rows; ++i)
    TORCH_CHECK_VALUE(priority_is_valid(priority[i]),
                      "priorities must be finite and non-negative, got ", priority[i],
                      " at position ", i);
}

}  // namespace dqnfast
