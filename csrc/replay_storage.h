// The replay storage as raw pointers and sizes, the one view of it that the CPU
// code and the CUDA kernels share. Its fields carry the names of the tensors that
// dqnfast/replay_storage.py allocates (and the ops' schemas in csrc/ops.cpp take);
// the layout is csrc/replay_layout.h's. Plain C++, like replay_layout.h.
#pragma once

#include <cstdint>

#include "priority_tree.h"

namespace dqnfast {

struct ReplayStorage {
  uint8_t* frames;      // [E][frame_capacity][frame_bytes]
  int64_t* obs_pos;     // [E][capacity]
  int64_t* action;      // [E][capacity]
  float* reward;        // [E][capacity]
  bool* terminated;     // [E][capacity]
  bool* truncated;      // [E][capacity]
  int64_t* counters;    // [E][kNumCounters]
  int64_t num_envs;
  int64_t capacity;        // transition slots per environment
  int64_t frame_capacity;  // frames per environment
  int64_t frame_bytes;
  int64_t frame_stack;
  int64_t n_step;
  PriorityTree tree;  // tree.sum is null without prioritized replay
};

}  // namespace dqnfast
