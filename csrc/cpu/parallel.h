// How the CPU kernels split work across torch's threads.
#pragma once

#include <cstdint>

namespace dqnfast {

// A thread pays off only for about a megabyte of memory traffic: waking one for
// less costs more than it saves, and on a busy machine far more. Kernels pick
// their grain (items per thread) from this.
constexpr int64_t kBytesPerThread = 1 << 20;

}  // namespace dqnfast
