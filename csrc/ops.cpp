// The schema of every dqnfast op, declared once. Implementations register
// per dispatch key in csrc/cpu/ and csrc/cuda/; fake (meta) kernels are
// registered from Python in dqnfast/ops.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing dqnfast._C runs the static initializers below; the module itself
// holds nothing.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(dqnfast, m) {
  // Appends one transition to each environment named in env_ids (row i of the
  // inputs to environment env_ids[i]); see csrc/replay_layout.h. A call whose
  // next_obs does not continue its obs, or with an action outside [0, num_actions)
  // (num_actions 0: only negative ones), a non-finite reward or a non-finite float
  // observation, writes nothing: on the CPU it raises; on the GPU, where raising
  // would wait for the GPU, it adds 1 to rejected_adds[0] and ORs the reasons'
  // bits (kRejected* in csrc/replay_layout.h) into rejected_adds[1] (int64, two
  // elements) for the caller to read at its next synchronization. With priority
  // storage (all four tensors or none; csrc/priority_tree.h) the new transitions
  // get (|new_priority| + priority_eps) ^ alpha, or the largest priority so far,
  // and the trees follow the transitions that became or stopped being sampleable.
  m.def(
      "replay_add(Tensor(a!) frames, Tensor(b!) obs_pos, Tensor(c!) action, "
      "Tensor(d!) reward, Tensor(e!) terminated, Tensor(f!) truncated, "
      "Tensor(g!) counters, Tensor(h!) rejected_adds, Tensor(i!)? priority, "
      "Tensor(j!)? sum_tree, Tensor(k!)? min_tree, Tensor(l!)? max_priority, Tensor obs, "
      "Tensor next_obs, Tensor new_action, Tensor new_reward, Tensor new_terminated, "
      "Tensor new_truncated, Tensor env_ids, Tensor? new_priority, int frame_stack, "
      "int n_step, float alpha, float priority_eps, int num_actions) -> ()");
  // Appends transitions whose stacks are read from one array of frames: row i has
  // obs chunk_frames[p : p+k] and next_obs chunk_frames[p+1 : p+k+1], p =
  // chunk_obs_pos[i] (int64, on the CPU, as env_ids), and goes to environment
  // env_ids[i]; rows are added in order, so one environment's rows follow its stream.
  // Otherwise as replay_add (checks, priorities, trees); host storage only.
  m.def(
      "replay_add_frames(Tensor(a!) frames, Tensor(b!) obs_pos, Tensor(c!) action, "
      "Tensor(d!) reward, Tensor(e!) terminated, Tensor(f!) truncated, "
      "Tensor(g!) counters, Tensor(i!)? priority, Tensor(j!)? sum_tree, "
      "Tensor(k!)? min_tree, Tensor(l!)? max_priority, Tensor chunk_frames, "
      "Tensor chunk_obs_pos, Tensor new_action, Tensor new_reward, Tensor new_terminated, "
      "Tensor new_truncated, Tensor env_ids, Tensor? new_priority, int frame_stack, "
      "int n_step, float alpha, float priority_eps, int num_actions) -> ()");
  // Gathers the n-step transitions picked by `random_bits` into the out tensors:
  // uniformly over the sampleable transitions, or with the trees stratified by
  // priority (importance weights with exponent beta, a float64 tensor of one element
  // so that a captured sample reads its current value; ones without trees).
  m.def(
      "replay_sample(Tensor frames, Tensor obs_pos, Tensor action, Tensor reward, "
      "Tensor terminated, Tensor truncated, Tensor counters, Tensor? sum_tree, "
      "Tensor? min_tree, Tensor random_bits, int frame_stack, int n_step, float gamma, "
      "Tensor beta, Tensor(a!) out_obs, Tensor(b!) out_next_obs, Tensor(c!) out_action, "
      "Tensor(d!) out_reward, Tensor(e!) out_terminated, Tensor(f!) out_discount, "
      "Tensor(g!) out_index, Tensor(h!) out_weight) -> ()");
  // Sets (|new_priority| + priority_eps) ^ alpha for the transitions a sample's
  // `index` names; transitions overwritten since are left alone, and of duplicate
  // indices the largest priority wins.
  m.def(
      "replay_update_priorities(Tensor(a!) priority, Tensor(b!) sum_tree, "
      "Tensor(c!) min_tree, Tensor(d!) max_priority, Tensor counters, Tensor index, "
      "Tensor new_priority, int n_step, float alpha, float priority_eps) -> ()");
  // Atari frame preprocessing in one pass over each frame (pair): max of
  // `frames` and `prev_frames` (N, H, W, 3) uint8 (or (N, 3, H, W) with
  // `channels_first`, as envpool emits them), grayscale, crop
  // (top, left, height, width) of the input, area resize of the crop to
  // `resize` (height, width), and rows/cols `window` (top, left, height,
  // width) of the resized image written to `out` (N, height, width) uint8.
  m.def(
      "preprocess_frames(Tensor frames, Tensor? prev_frames, int[] crop, int[] resize, "
      "int[] window, bool channels_first, Tensor(a!) out) -> ()");
  // Writes to `out` the stacks (N, k, H, W) with frames (N, H, W) pushed in
  // (oldest frame dropped); where `reset` is true, k copies of the frame. `out`
  // has the shape of `stacks` and shares no memory with it: the stacks already
  // handed out stay as they were, and no copy of them is made first.
  m.def("push_frames(Tensor stacks, Tensor frames, Tensor? reset, Tensor(a!) out) -> ()");
}
