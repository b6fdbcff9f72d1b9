// CUDA implementations of the preprocessing ops (kernels in
// preprocess_kernels.cu). Built only with a CUDA build of torch.
#include "binding.h"

#include "../preprocess_checks.h"
#include "../preprocess_layout.h"

#include <array>
#include <map>
#include <mutex>

namespace dqnfast {
namespace {

template <typename T>
at::Tensor on_device(const std::vector<T>& values, at::ScalarType dtype, const at::Device& device) {
  return at::tensor(at::ArrayRef<T>(values), at::TensorOptions().dtype(dtype)).to(device);
}

// The area taps of one geometry in one GPU's memory (see PreprocessPlan).
struct DeviceTaps {
  at::Tensor row_begin, row_source, row_weight;
  int64_t col_taps;
  at::Tensor col_source, col_weight;
};

// Uploaded once per geometry and GPU, then reused: an upload from pageable memory
// waits for the GPU, and cannot happen while a CUDA graph is being captured.
const DeviceTaps& device_taps(const PreprocessGeometry& g, const at::Device& device) {
  using Key = std::array<int64_t, 7>;
  static std::mutex mutex;
  // Never freed: CUDA memory must not be released at static destruction, after the
  // allocator and the driver may be gone.
  static auto* cache = new std::map<Key, DeviceTaps>();
  const Key key{device.index(), g.crop_height,  g.resize_height, g.crop_width,
                g.resize_width, g.window_left, g.window_width};
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = cache->find(key);
  if (found != cache->end()) return found->second;
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None,
              "preprocess_frames: the tables of a new geometry (crop ", g.crop_height, "x",
              g.crop_width, " resized to ", g.resize_height, "x", g.resize_width,
              ") are uploaded at its first call, which cannot be inside CUDA-graph capture: "
              "call it once with this geometry before capturing");
  // The same taps as the CPU code.
  const AreaTaps rows = area_taps(g.crop_height, g.resize_height);
  const PaddedTaps cols = pad_taps(area_taps(g.crop_width, g.resize_width), g.window_left,
                                   g.window_width);
  DeviceTaps taps{on_device(rows.begin, at::kInt, device), on_device(rows.source, at::kInt, device),
                  on_device(rows.weight, at::kFloat, device), cols.per_output,
                  on_device(cols.source, at::kInt, device), on_device(cols.weight, at::kFloat, device)};
  return cache->emplace(key, std::move(taps)).first->second;
}

void preprocess_frames_cuda(const at::Tensor& frames_in,
                            const std::optional<at::Tensor>& prev_frames_in,
                            at::IntArrayRef crop, at::IntArrayRef resize, at::IntArrayRef window,
                            bool channels_first, at::Tensor out) {
  const PreprocessGeometry g =
      check_preprocess(frames_in, prev_frames_in, crop, resize, window, channels_first, out);
  const c10::cuda::CUDAGuard guard(frames_in.device());
  const at::Tensor frames = frames_in.contiguous();
  const at::Tensor prev = prev_frames_in.has_value() ? prev_frames_in->contiguous() : at::Tensor();
  const DeviceTaps& taps = device_taps(g, frames.device());
  cuda::PreprocessPlan plan{frames.size(0), g.height, g.width, channels_first,
                            g.crop_top, g.crop_left, g.window_top, g.window_height,
                            g.window_width, taps.row_begin.data_ptr<int32_t>(),
                            taps.row_source.data_ptr<int32_t>(), taps.row_weight.data_ptr<float>(),
                            taps.col_taps, taps.col_source.data_ptr<int32_t>(),
                            taps.col_weight.data_ptr<float>()};
  check_launch(cuda::preprocess_frames(plan, frames.data_ptr<uint8_t>(),
                                       prev.defined() ? prev.data_ptr<uint8_t>() : nullptr,
                                       out.data_ptr<uint8_t>(), at::cuda::getCurrentCUDAStream()),
               "preprocess_frames");
}

void push_frames_cuda(const at::Tensor& stacks, const at::Tensor& frames_in,
                      const std::optional<at::Tensor>& reset_in, at::Tensor out) {
  check_push_frames(stacks, frames_in, reset_in, out);
  const c10::cuda::CUDAGuard guard(stacks.device());
  const at::Tensor frames = frames_in.contiguous();
  const at::Tensor reset = reset_in.has_value() ? reset_in->contiguous() : at::Tensor();
  const int64_t n = stacks.size(0);
  const int64_t frame_bytes = n == 0 ? 0 : frames.numel() / n * frames.element_size();
  check_launch(cuda::push_frames(static_cast<const uint8_t*>(stacks.data_ptr()),
                                 static_cast<const uint8_t*>(frames.data_ptr()),
                                 reset.defined() ? reset.data_ptr<bool>() : nullptr,
                                 static_cast<uint8_t*>(out.data_ptr()), n, stacks.size(1),
                                 frame_bytes, at::cuda::getCurrentCUDAStream()),
               "push_frames");
}

}  // namespace

TORCH_LIBRARY_IMPL(dqnfast, CUDA, m) {
  m.impl("preprocess_frames", &preprocess_frames_cuda);
  m.impl("push_frames", &push_frames_cuda);
}

}  // namespace dqnfast
