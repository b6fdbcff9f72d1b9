"""Atari frame preprocessing: max of two frames, grayscale, area resize, crop, stack."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from dqnfast import ops

Frames = Union[np.ndarray, torch.Tensor]

# The textbook's (and Mnih et al. 2013's) layout: resize to 84 wide, 110 high, then
# keep rows 18..101, the playing field.
_TEXTBOOK_RESIZE = (110, 84)
_TEXTBOOK_WINDOW = (18, 0, 84, 84)


def preprocess_frames(frames: Frames, prev_frames: Optional[Frames] = None, *,
                      out_size: Tuple[int, int] = (84, 84),
                      crop: Optional[Sequence[int]] = None, mode: str = "deepmind",
                      channels_first: bool = False,
                      out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Turns RGB frames (N, H, W, 3) uint8 into gray (N, out_h, out_w) uint8 in one pass.

    With ``channels_first=True`` the frames are (N, 3, H, W), as envpool emits them.
    ``prev_frames`` (same shape) are max-pooled with ``frames`` first (Atari flicker).
    Grayscale is 0.299 R + 0.587 G + 0.114 B, resizing is area interpolation (each
    output pixel the coverage-weighted mean of the input pixels under it).
    ``crop=(top, left, height, width)`` selects the part of the input to resize.
    ``mode="deepmind"`` resizes the (cropped) frame to ``out_size`` (height, width);
    ``mode="textbook"`` resizes it to 84 wide by 110 high and keeps rows 18 to 101.
    ``out``, if given, is written in place (e.g. a slot of a frame stack) and returned.
    """
    frames = _as_tensor(frames, "frames")
    if prev_frames is not None:
        prev_frames = _as_tensor(prev_frames, "prev_frames")
    if frames.dim() != 4:
        layout = "(N, 3, H, W)" if channels_first else "(N, H, W, 3)"
        raise ValueError(f"expected frames of shape {layout}, got {tuple(frames.shape)}")
    height, width = frames.shape[2:4] if channels_first else frames.shape[1:3]
    crop = (0, 0, height, width) if crop is None else tuple(int(c) for c in crop)
    out_size = tuple(int(s) for s in out_size)
    if mode == "deepmind":
        resize, window = out_size, (0, 0, *out_size)
    elif mode == "textbook":
        if out_size != (84, 84):
            raise ValueError(f"mode='textbook' gives 84x84 frames, got out_size={out_size}")
        resize, window = _TEXTBOOK_RESIZE, _TEXTBOOK_WINDOW
    else:
        raise ValueError(f"mode must be 'deepmind' or 'textbook', got {mode!r}")
    if out is None:
        out = torch.empty((frames.shape[0], window[2], window[3]), dtype=torch.uint8,
                          device=frames.device)
    ops.preprocess_frames(frames, prev_frames, crop, resize, window, channels_first, out)
    return out


def push_frames(stacks: torch.Tensor, frames: Frames,
                reset: Optional[Union[np.ndarray, torch.Tensor]] = None, *,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """New stacks: ``stacks`` (N, k, ...) with one new frame per env pushed in, the
    oldest dropped; envs where ``reset`` is true get k copies of their new frame.
    ``stacks`` is left as it was, so stacks handed out earlier never change; the result
    goes to ``out`` (same shape, no memory shared with ``stacks``), new if not given."""
    frames = _as_tensor(frames, "frames").to(stacks.device)
    if reset is not None:
        reset = _as_tensor(reset, "reset").to(stacks.device)
    if out is None:
        out = torch.empty_like(stacks, memory_format=torch.contiguous_format)
    ops.push_frames(stacks, frames, reset, out)
    return out


def _as_tensor(value: Frames, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"expected {name} as a numpy array or torch tensor, got {type(value).__name__}")
