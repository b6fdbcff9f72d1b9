// CUDA implementations of the preprocessing ops (kernels in
// preprocess_kernels.cu). Built only with a CUDA build of torch.
#include "binding.h"

#include "../preprocess_checks.h"
#include "../preprocess_layout.h"

namespace dqnfast {
namespace {

template <typename T>
at::Tensor on_device(const std::vector<T>& values, at::ScalarType dtype, const at::Device& device) {
  return at::tensor(at::ArrayRef<T>(values), at::TensorOptions().dtype(dtype)).to(device);
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

  // The same taps as the CPU code.
  const AreaTaps rows = area_taps(g.crop_height, g.resize_height);
  const PaddedTaps cols = pad_taps(area_taps(g.crop_width, g.resize_width), g.window_left,
                                   g.window_width);
  const at::Device device = frames.device();
  const at::Tensor row_begin = on_device(rows.begin, at::kInt, device);
  const at::Tensor row_source = on_device(rows.source, at::kInt, device);
  const at::Tensor row_weight = on_device(rows.weight, at::kFloat, device);
  const at::Tensor col_source = on_device(cols.source, at::kInt, device);
  const at::Tensor col_weight = on_device(cols.weight, at::kFloat, device);

  cuda::PreprocessPlan plan{frames.size(0), g.height, g.width, channels_first,
                            g.crop_top, g.crop_left, g.window_top, g.window_height,
                            g.window_width, row_begin.data_ptr<int32_t>(),
                            row_source.data_ptr<int32_t>(), row_weight.data_ptr<float>(),
                            cols.per_output, col_source.data_ptr<int32_t>(),
                            col_weight.data_ptr<float>()};
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
