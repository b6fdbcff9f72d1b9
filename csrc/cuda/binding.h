// What the CUDA binding files (*_cuda.cpp) share. Built only with a CUDA build of torch.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "kernels.h"

namespace dqnfast {

// A kernel launcher's error code as a Python RuntimeError naming the op.
inline void check_launch(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, " failed: ", cudaGetErrorString(status));
}

}  // namespace dqnfast
