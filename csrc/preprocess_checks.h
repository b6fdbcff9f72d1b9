// Argument checks shared by the CPU and CUDA implementations of the
// preprocessing ops; user mistakes raise ValueError / TypeError.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <torch/types.h>

#include "replay_checks.h"  // dtype_name

namespace dqnfast {

// The geometry of one preprocess_frames call, checked.
struct PreprocessGeometry {
  int64_t height, width;  // of the input frames
  int64_t crop_top, crop_left, crop_height, crop_width;
  int64_t resize_height, resize_width;
  int64_t window_top, window_left, window_height, window_width;
};

inline PreprocessGeometry check_preprocess(const at::Tensor& frames,
                                           const std::optional<at::Tensor>& prev_frames,
                                           at::IntArrayRef crop, at::IntArrayRef resize,
                                           at::IntArrayRef window, bool channels_first,
                                           const at::Tensor& out) {
  TORCH_CHECK_TYPE(frames.scalar_type() == at::kByte, "expected torch.uint8 frames, got ",
                   dtype_name(frames.scalar_type()));
  TORCH_CHECK_VALUE(frames.dim() == 4 && frames.size(channels_first ? 1 : 3) == 3,
                    "expected frames of shape ", channels_first ? "(N, 3, H, W)" : "(N, H, W, 3)",
                    " (RGB), got ", frames.sizes());
  TORCH_CHECK_VALUE(frames.size(0) > 0 && frames.size(1) > 0 && frames.size(2) > 0,
                    "expected a non-empty batch of frames, got shape ", frames.sizes());
  if (prev_frames.has_value()) {
    TORCH_CHECK_TYPE(prev_frames->scalar_type() == at::kByte,
                     "expected torch.uint8 prev_frames, got ",
                     dtype_name(prev_frames->scalar_type()));
    TORCH_CHECK_VALUE(prev_frames->sizes() == frames.sizes(), "expected prev_frames of shape ",
                      frames.sizes(), " (as frames), got ", prev_frames->sizes());
    TORCH_CHECK_VALUE(prev_frames->device() == frames.device(), "expected prev_frames on ",
                      frames.device(), ", got ", prev_frames->device());
  }
  TORCH_CHECK_VALUE(crop.size() == 4 && resize.size() == 2 && window.size() == 4,
                    "expected crop (top, left, height, width), resize (height, width) and window "
                    "(top, left, height, width), got ", crop, ", ", resize, ", ", window);
  const int64_t height = frames.size(channels_first ? 2 : 1);
  const int64_t width = frames.size(channels_first ? 3 : 2);
  PreprocessGeometry g{height,  width,     crop[0],   crop[1],   crop[2],  crop[3],
                       resize[0], resize[1], window[0], window[1], window[2], window[3]};
  TORCH_CHECK_VALUE(g.crop_top >= 0 && g.crop_left >= 0 && g.crop_height > 0 &&
                        g.crop_width > 0 && g.crop_top + g.crop_height <= height &&
                        g.crop_left + g.crop_width <= width,
                    "crop ", crop, " (top, left, height, width) must lie inside the ", height,
                    "x", width, " frames");
  TORCH_CHECK_VALUE(g.resize_height > 0 && g.resize_width > 0 &&
                        g.resize_height <= g.crop_height && g.resize_width <= g.crop_width,
                    "area resize only shrinks: resize ", resize, " must be positive and at most "
                    "the cropped input ", g.crop_height, "x", g.crop_width);
  TORCH_CHECK_VALUE(g.window_top >= 0 && g.window_left >= 0 && g.window_height > 0 &&
                        g.window_width > 0 &&
                        g.window_top + g.window_height <= g.resize_height &&
                        g.window_left + g.window_width <= g.resize_width,
                    "window ", window, " (top, left, height, width) must lie inside the resized ",
                    g.resize_height, "x", g.resize_width, " image");
  TORCH_CHECK_VALUE(out.scalar_type() == at::kByte && out.is_contiguous() &&
                        out.device() == frames.device() &&
                        out.sizes() == at::IntArrayRef({frames.size(0), g.window_height,
                                                        g.window_width}),
                    "expected a contiguous torch.uint8 out of shape [", frames.size(0), ", ",
                    g.window_height, ", ", g.window_width, "] on ", frames.device(), ", got ",
                    dtype_name(out.scalar_type()), " ", out.sizes(), " on ", out.device());
  return g;
}

inline void check_push_frames(const at::Tensor& stacks, const at::Tensor& frames,
                              const std::optional<at::Tensor>& reset, const at::Tensor& out) {
  TORCH_CHECK_TYPE(stacks.scalar_type() == frames.scalar_type(), "expected frames of ",
                   dtype_name(stacks.scalar_type()), " (as stacks), got ",
                   dtype_name(frames.scalar_type()));
  TORCH_CHECK_VALUE(stacks.dim() >= 2 && stacks.is_contiguous(),
                    "expected contiguous stacks of shape (N, k, ...), got ", stacks.sizes());
  std::vector<int64_t> frame_shape{stacks.size(0)};
  for (int64_t d = 2; d < stacks.dim(); ++d) frame_shape.push_back(stacks.size(d));
  TORCH_CHECK_VALUE(frames.sizes() == at::IntArrayRef(frame_shape), "expected frames of shape ",
                    at::IntArrayRef(frame_shape), " (N, then one frame), got ", frames.sizes());
  TORCH_CHECK_VALUE(frames.device() == stacks.device(), "expected frames on ", stacks.device(),
                    ", got ", frames.device());
  if (reset.has_value()) {
    TORCH_CHECK_TYPE(reset->scalar_type() == at::kBool, "expected torch.bool reset, got ",
                     dtype_name(reset->scalar_type()));
    TORCH_CHECK_VALUE(reset->dim() == 1 && reset->size(0) == stacks.size(0) &&
                          reset->device() == stacks.device(),
                      "expected reset of shape [", stacks.size(0), "] on ", stacks.device(),
                      ", got ", reset->sizes(), " on ", reset->device());
  }
  TORCH_CHECK_VALUE(out.scalar_type() == stacks.scalar_type() && out.sizes() == stacks.sizes() &&
                        out.device() == stacks.device() && out.is_contiguous(),
                    "expected a contiguous out of ", dtype_name(stacks.scalar_type()), " ",
                    stacks.sizes(), " on ", stacks.device(), " (as stacks), got ",
                    dtype_name(out.scalar_type()), " ", out.sizes(), " on ", out.device());
  TORCH_CHECK_VALUE(at::get_overlap_status(out, stacks) == at::MemOverlapStatus::No,
                    "expected out to share no memory with stacks: push_frames writes new stacks "
                    "and leaves the old ones as they were");
}

}  // namespace dqnfast
