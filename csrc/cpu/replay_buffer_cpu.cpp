// CPU implementations of the replay ops: memcpy of whole frames, parallel over
// environments (add) and over the batch (sample); the priority trees are
// refreshed after the frames are in (csrc/priority_tree.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "parallel.h"
#include "../replay_checks.h"

namespace dqnfast {
namespace {

// Do the k frames at positions first..first+k-1 of `ring` equal `stack`?
bool ring_holds_stack(const uint8_t* ring, int64_t frame_capacity, int64_t frame_bytes,
                      int64_t first, const uint8_t* stack, int64_t k) {
  for (int64_t i = 0; i < k; ++i) {
    const uint8_t* stored = ring + frame_slot(first + i, frame_capacity) * frame_bytes;
    if (std::memcmp(stored, stack + i * frame_bytes, frame_bytes) != 0) return false;
  }
  return true;
}

// Appends one transition (obs stack `o`, next_obs stack `n`: k frames each) to
// environment e, with priority `given` (< 0: the largest so far). Touches only
// environment e's rings and counters (rows of distinct environments may run in
// parallel); the trees are refreshed afterwards (refresh_changed).
void add_row(const ReplayStorage& t, int64_t e, const uint8_t* o, const uint8_t* n,
             int64_t new_action, float new_reward, bool new_terminated, bool new_truncated,
             float given) {
  const int64_t k = t.frame_stack, fb = t.frame_bytes, frame_capacity = t.frame_capacity;
  const int64_t capacity = t.capacity;
  int64_t* c = t.counters + e * kNumCounters;
  uint8_t* ring = t.frames + e * frame_capacity * fb;
  int64_t fw = c[kFramesWritten];
  // A new stream starts at an episode start, or wherever obs is not the
  // stored next_obs: then the whole stack is stored as it came.
  const bool continues =
      c[kStreamOpen] != 0 && ring_holds_stack(ring, frame_capacity, fb, fw - k, o, k);
  if (!continues) {
    for (int64_t i = 0; i < k; ++i)
      std::memcpy(ring + frame_slot(fw + i, frame_capacity) * fb, o + i * fb, fb);
    fw += k;
  }
  std::memcpy(ring + frame_slot(fw, frame_capacity) * fb, n + (k - 1) * fb, fb);
  const int64_t obs_newest = fw - 1;
  fw += 1;

  const int64_t n_written = c[kTransitionsWritten];
  const int64_t at = e * capacity + n_written % capacity;
  t.obs_pos[at] = obs_newest;
  t.action[at] = new_action;
  t.reward[at] = new_reward;
  t.terminated[at] = new_terminated;
  t.truncated[at] = new_truncated;
  const int64_t tw = n_written + 1;

  // Drop transitions whose slot or oldest frame has been overwritten.
  int64_t first_valid = std::max(c[kFirstValid], tw - capacity);
  while (first_valid < tw &&
         t.obs_pos[e * capacity + first_valid % capacity] - (k - 1) < fw - frame_capacity)
    ++first_valid;

  if (t.tree.sum != nullptr) t.tree.priority[at] = given < 0.0f ? *t.tree.max_priority : given;

  c[kTransitionsWritten] = tw;
  c[kFramesWritten] = fw;
  c[kFirstValid] = first_valid;
  c[kStreamOpen] = !(new_terminated || new_truncated);
  if (!continues) c[kStreamStart] = n_written;
}

// After add_row on environment e: its leaves change only where transitions left
// (evicted) or joined (window complete) the sampleable range, which was
// [first_before, end_before); the new transition's slot is the one evicted from it.
void refresh_changed(const ReplayStorage& t, int64_t e, int64_t first_before,
                     int64_t end_before) {
  const int64_t* c = t.counters + e * kNumCounters;
  const int64_t changed[2][2] = {{first_before, c[kFirstValid]},
                                 {end_before, sampleable_end(c, t.n_step)}};
  for (const auto& range : changed) {
    const LeafRuns runs = leaf_runs(e, range[0], range[1], t.capacity);
    for (int r = 0; r < runs.count; ++r) {
      for (int64_t leaf = runs.begin[r]; leaf < runs.end[r]; ++leaf)
        refresh_leaf(t.tree, c, e, leaf - e * t.capacity, t.capacity, t.n_step);
      refresh_ancestors(t.tree, runs.begin[r], runs.end[r]);
    }
  }
}

// Checks the optional priorities of `rows` new transitions; returns them contiguous
// (undefined if none were passed).
at::Tensor checked_new_priority(bool prioritized, const std::optional<at::Tensor>& new_priority_in,
                                int64_t rows, const at::Device& device) {
  TORCH_CHECK_VALUE(prioritized || !new_priority_in,
                    "priorities passed to add need a prioritized buffer");
  if (!new_priority_in) return at::Tensor();
  check_priority_input(*new_priority_in, rows, device);
  at::Tensor new_priority = new_priority_in->contiguous();
  check_priority_values(new_priority.data_ptr<float>(), new_priority.size(0));
  return new_priority;
}

void replay_add_cpu(at::Tensor frames, at::Tensor obs_pos, at::Tensor action,
                    at::Tensor reward, at::Tensor terminated, at::Tensor truncated,
                    at::Tensor counters, at::Tensor rejected_adds,
                    const std::optional<at::Tensor>& priority,
                    const std::optional<at::Tensor>& sum_tree,
                    const std::optional<at::Tensor>& min_tree,
                    const std::optional<at::Tensor>& max_priority, const at::Tensor& obs_in,
                    const at::Tensor& next_obs_in, const at::Tensor& new_action_in,
                    const at::Tensor& new_reward_in, const at::Tensor& new_terminated_in,
                    const at::Tensor& new_truncated_in, const at::Tensor& env_ids_in,
                    const std::optional<at::Tensor>& new_priority_in, int64_t k,
                    int64_t n_step, double alpha, double priority_eps, int64_t num_actions) {
  check_storage(frames, obs_pos, action, reward, terminated, counters, k, &truncated);
  check_rejected_adds(rejected_adds, frames);  // unused here: the CPU raises at once
  check_add_inputs(frames, obs_in, next_obs_in, new_action_in, new_reward_in,
                   new_terminated_in, new_truncated_in, env_ids_in, k);
  check_settings(n_step, alpha, priority_eps);
  const bool prioritized = check_priority_storage(counters, priority, sum_tree, min_tree,
                                                  max_priority, obs_pos.size(1));
  const at::Tensor new_priority =
      checked_new_priority(prioritized, new_priority_in, env_ids_in.size(0), frames.device());
  const at::Tensor obs = obs_in.contiguous();
  const at::Tensor next_obs = next_obs_in.contiguous();
  const at::Tensor new_action = new_action_in.contiguous();
  const at::Tensor new_reward = new_reward_in.contiguous();
  const at::Tensor new_terminated = new_terminated_in.contiguous();
  const at::Tensor new_truncated = new_truncated_in.contiguous();
  const at::Tensor env_ids = env_ids_in.contiguous();

  const ReplayStorage target =
      replay_storage_of(frames, obs_pos, action, reward, terminated, truncated, counters,
                        priority, sum_tree, min_tree, max_priority, k, n_step);
  const int64_t num_rows = env_ids.size(0);
  const int64_t fb = target.frame_bytes;
  const uint8_t* obs_bytes = static_cast<const uint8_t*>(obs.data_ptr());
  const uint8_t* next_bytes = static_cast<const uint8_t*>(next_obs.data_ptr());

  // next_obs must be obs shifted by one frame: only its newest frame is stored.
  for (int64_t i = 0; i < num_rows; ++i) {
    const uint8_t* o = obs_bytes + i * k * fb;
    const uint8_t* n = next_bytes + i * k * fb;
    TORCH_CHECK_VALUE(std::memcmp(n, o + fb, (k - 1) * fb) == 0, "next_obs of row ", i,
                      " does not continue its obs: with frame_stack=", k,
                      ", next_obs[:-1] must equal obs[1:]");
  }
  check_row_values(new_action.data_ptr<int64_t>(), new_reward.data_ptr<float>(), num_rows,
                   num_actions);
  check_finite_observations(obs, "obs");
  check_finite_observations(next_obs, "next_obs");

  const int64_t* in_action = new_action.data_ptr<int64_t>();
  const float* in_reward = new_reward.data_ptr<float>();
  const bool* in_term = new_terminated.data_ptr<bool>();
  const bool* in_trunc = new_truncated.data_ptr<bool>();
  const int64_t* ids = env_ids.data_ptr<int64_t>();

  float given_max = 0.0f;  // the largest priority passed in
  std::vector<float> given(num_rows, -1.0f);
  if (new_priority.defined()) {
    for (int64_t i = 0; i < num_rows; ++i) {
      given[i] = priority_of(new_priority.data_ptr<float>()[i], alpha, priority_eps);
      given_max = std::max(given_max, given[i]);
    }
  }
  // Per row, the sampleable range [first_valid, sampleable_end) before the add.
  std::vector<int64_t> before(prioritized ? 2 * num_rows : 0);

  const int64_t add_grain = std::max<int64_t>(1, kBytesPerThread / ((k + 1) * fb));
  at::parallel_for(0, num_rows, add_grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t* c = target.counters + ids[i] * kNumCounters;
      if (prioritized) {
        before[2 * i] = c[kFirstValid];
        before[2 * i + 1] = sampleable_end(c, n_step);
      }
      add_row(target, ids[i], obs_bytes + i * k * fb, next_bytes + i * k * fb, in_action[i],
              in_reward[i], in_term[i], in_trunc[i], given[i]);
    }
  });
  if (!prioritized) return;
  *target.tree.max_priority = std::max(*target.tree.max_priority, given_max);
  for (int64_t i = 0; i < num_rows; ++i)
    refresh_changed(target, ids[i], before[2 * i], before[2 * i + 1]);
}

void replay_add_frames_cpu(at::Tensor frames, at::Tensor obs_pos, at::Tensor action,
                           at::Tensor reward, at::Tensor terminated, at::Tensor truncated,
                           at::Tensor counters, const std::optional<at::Tensor>& priority,
                           const std::optional<at::Tensor>& sum_tree,
                           const std::optional<at::Tensor>& min_tree,
                           const std::optional<at::Tensor>& max_priority,
                           const at::Tensor& chunk_frames_in, const at::Tensor& chunk_obs_pos_in,
                           const at::Tensor& new_action_in, const at::Tensor& new_reward_in,
                           const at::Tensor& new_terminated_in,
                           const at::Tensor& new_truncated_in, const at::Tensor& env_ids_in,
                           const std::optional<at::Tensor>& new_priority_in, int64_t k,
                           int64_t n_step, double alpha, double priority_eps,
                           int64_t num_actions) {
  check_storage(frames, obs_pos, action, reward, terminated, counters, k, &truncated);
  check_add_frames_inputs(frames, chunk_frames_in, chunk_obs_pos_in, new_action_in,
                          new_reward_in, new_terminated_in, new_truncated_in, env_ids_in, k);
  check_settings(n_step, alpha, priority_eps);
  const bool prioritized = check_priority_storage(counters, priority, sum_tree, min_tree,
                                                  max_priority, obs_pos.size(1));
  const int64_t num_rows = env_ids_in.size(0);
  const at::Tensor new_priority =
      checked_new_priority(prioritized, new_priority_in, num_rows, frames.device());
  const at::Tensor chunk_frames = chunk_frames_in.contiguous();
  const at::Tensor chunk_obs_pos = chunk_obs_pos_in.contiguous();
  const at::Tensor new_action = new_action_in.contiguous();
  const at::Tensor new_reward = new_reward_in.contiguous();
  const at::Tensor new_terminated = new_terminated_in.contiguous();
  const at::Tensor new_truncated = new_truncated_in.contiguous();
  const at::Tensor env_ids = env_ids_in.contiguous();
  check_row_values(new_action.data_ptr<int64_t>(), new_reward.data_ptr<float>(), num_rows,
                   num_actions);
  check_finite_observations(chunk_frames, "frames");

  const ReplayStorage target =
      replay_storage_of(frames, obs_pos, action, reward, terminated, truncated, counters,
                        priority, sum_tree, min_tree, max_priority, k, n_step);
  const uint8_t* chunk_bytes = static_cast<const uint8_t*>(chunk_frames.data_ptr());
  const int64_t* positions = chunk_obs_pos.data_ptr<int64_t>();
  const int64_t* ids = env_ids.data_ptr<int64_t>();
  const float* raw_priority = new_priority.defined() ? new_priority.data_ptr<float>() : nullptr;
  const int64_t* in_action = new_action.data_ptr<int64_t>();
  const float* in_reward = new_reward.data_ptr<float>();
  const bool* in_term = new_terminated.data_ptr<bool>();
  const bool* in_trunc = new_truncated.data_ptr<bool>();
  // In order: rows of one environment follow each other in its stream.
  for (int64_t i = 0; i < num_rows; ++i) {
    const int64_t e = ids[i];
    const int64_t* c = target.counters + e * kNumCounters;
    const int64_t first_before = c[kFirstValid], end_before = sampleable_end(c, n_step);
    const uint8_t* o = chunk_bytes + positions[i] * target.frame_bytes;
    float given = -1.0f;
    if (raw_priority != nullptr) {
      given = priority_of(raw_priority[i], alpha, priority_eps);
      *target.tree.max_priority = std::max(*target.tree.max_priority, given);
    }
    add_row(target, e, o, o + target.frame_bytes, in_action[i], in_reward[i], in_term[i], in_trunc[i],
            given);
    if (prioritized) refresh_changed(target, e, first_before, end_before);
  }
}

void replay_sample_cpu(const at::Tensor& frames, const at::Tensor& obs_pos,
                       const at::Tensor& action, const at::Tensor& reward,
                       const at::Tensor& terminated, const at::Tensor& truncated,
                       const at::Tensor& counters, const std::optional<at::Tensor>& sum_tree,
                       const std::optional<at::Tensor>& min_tree,
                       const at::Tensor& random_bits_in, int64_t k, int64_t n_step,
                       double gamma, const at::Tensor& beta_in, at::Tensor out_obs, at::Tensor out_next_obs,
                       at::Tensor out_action, at::Tensor out_reward, at::Tensor out_terminated,
                       at::Tensor out_discount, at::Tensor out_index, at::Tensor out_weight) {
  check_storage(frames, obs_pos, action, reward, terminated, counters, k, &truncated);
  check_sample_outputs(frames, random_bits_in, out_obs, out_next_obs, out_action, out_reward,
                       out_terminated, out_discount, out_index, out_weight, k);
  check_sample_settings(n_step, gamma, beta_in, frames.device());
  const double beta = beta_in.contiguous().data_ptr<double>()[0];
  const bool prioritized = check_sample_trees(counters, sum_tree, min_tree, obs_pos.size(1));
  const ReplayStorage storage =
      replay_storage_of(frames, obs_pos, action, reward, terminated, truncated, counters,
                        std::nullopt, sum_tree, min_tree, std::nullopt, k, n_step);
  const PriorityTree& tree = storage.tree;
  const int64_t num_envs = storage.num_envs, frame_capacity = storage.frame_capacity;
  const int64_t capacity = storage.capacity, fb = storage.frame_bytes;
  const int64_t* counts = storage.counters;
  const int64_t total = sampleable_total(counts, num_envs, n_step);
  TORCH_CHECK_VALUE(total > 0, "cannot sample from an empty replay buffer");

  const at::Tensor random_bits = random_bits_in.contiguous();
  const int64_t* bits = random_bits.data_ptr<int64_t>();
  const int64_t batch = random_bits.size(0);
  uint8_t* dst_obs = static_cast<uint8_t*>(out_obs.data_ptr());
  uint8_t* dst_next = static_cast<uint8_t*>(out_next_obs.data_ptr());
  int64_t* dst_act = out_action.data_ptr<int64_t>();
  float* dst_rew = out_reward.data_ptr<float>();
  bool* dst_term = out_terminated.data_ptr<bool>();
  float* dst_discount = out_discount.data_ptr<float>();
  int64_t* dst_index = out_index.data_ptr<int64_t>();
  float* dst_weight = out_weight.data_ptr<float>();

  // Prioritized: all draws descend the tree together, one level at a time, so that
  // their cache misses overlap instead of following one another.
  std::vector<int64_t> leaf(prioritized ? batch : 0, 1);
  if (prioritized) {
    std::vector<double> target(batch);
    for (int64_t b = 0; b < batch; ++b) target[b] = stratified_target(tree, b, batch, bits[b]);
    for (int64_t level = 0, depth = tree_depth(tree.num_leaves); level < depth; ++level)
      for (int64_t b = 0; b < batch; ++b) descend_step(tree, leaf[b], target[b]);
    for (int64_t& node : leaf) node -= tree.num_leaves;
  }

  const int64_t grain = std::max<int64_t>(1, kBytesPerThread / (2 * k * fb));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      SampledTransition s;
      float weight = 1.0f;
      if (prioritized) {
        s.env = leaf[b] / capacity;
        s.number = transition_in_slot(counts + s.env * kNumCounters, leaf[b] % capacity, capacity);
        weight = importance_weight(tree, tree.sum[tree.num_leaves + leaf[b]], beta);
      } else {
        s = pick_transition(static_cast<uint64_t>(bits[b]), counts, num_envs, n_step, total);
      }
      const int64_t env_base = s.env * capacity;
      const NStepReturn ret =
          n_step_return(s.number, storage.obs_pos + env_base, storage.reward + env_base,
                        storage.terminated + env_base, storage.truncated + env_base, capacity,
                        counts[s.env * kNumCounters + kTransitionsWritten], n_step, gamma);
      const uint8_t* ring = storage.frames + s.env * frame_capacity * fb;
      const int64_t newest = storage.obs_pos[env_base + s.number % capacity];
      const int64_t next_newest = storage.obs_pos[env_base + ret.last % capacity] + 1;
      for (int64_t i = 0; i < k; ++i) {
        std::memcpy(dst_obs + (b * k + i) * fb,
                    ring + frame_slot(newest - k + 1 + i, frame_capacity) * fb, fb);
        std::memcpy(dst_next + (b * k + i) * fb,
                    ring + frame_slot(next_newest - k + 1 + i, frame_capacity) * fb, fb);
      }
      dst_act[b] = storage.action[env_base + s.number % capacity];
      dst_rew[b] = ret.reward;
      dst_term[b] = ret.terminated;
      dst_discount[b] = ret.discount;
      dst_index[b] = encode_index(s.env, s.number, num_envs);
      dst_weight[b] = weight;
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dqnfast, CPU, m) {
  m.impl("replay_add", &replay_add_cpu);
  m.impl("replay_add_frames", &replay_add_frames_cpu);
  m.impl("replay_sample", &replay_sample_cpu);
}

}  // namespace dqnfast
