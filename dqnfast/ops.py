"""Typed Python wrappers of every compiled op, and their fake (meta) kernels.

The schemas are in ``csrc/ops.cpp``; the package's ``__init__`` loads ``dqnfast._C``,
which registers them. The replay ops take a ``ReplayStorage`` and pass its tensors by
the names both sides use.

The fakes let the ops be traced by ``torch.compile``: every op only writes into
tensors it is given, so a fake returns nothing; it checks the shapes and dtypes that
the kernels check. CUDA-graph capture is another matter, decided by what each CUDA
kernel does on the host: ``replay_sample``, ``replay_update_priorities`` and
``push_frames`` can be captured; ``preprocess_frames`` can once its geometry has run
outside the capture (its tables are uploaded to the GPU at that first call);
``replay_add`` cannot (it checks its env_ids on the host and uploads them at each
call), and raises if asked to.
"""
from typing import Dict, Optional, Sequence

import torch

from dqnfast.replay_storage import NUM_COUNTERS, ReplayStorage

# The overloads themselves: calling them skips the overload lookup of each call.
_replay_add = torch.ops.dqnfast.replay_add.default
_replay_add_frames = torch.ops.dqnfast.replay_add_frames.default
_replay_sample = torch.ops.dqnfast.replay_sample.default
_replay_update_priorities = torch.ops.dqnfast.replay_update_priorities.default
_preprocess_frames = torch.ops.dqnfast.preprocess_frames.default
_push_frames = torch.ops.dqnfast.push_frames.default

# The bits of rejected_adds[1]: why the GPU rejected an add (csrc/replay_layout.h).
REJECTED_REASONS = {
    1: "a next_obs that does not continue its obs (next_obs[:, :-1] must equal obs[:, 1:])",
    2: "an action outside [0, num_actions)",
    4: "a non-finite reward",
    8: "a non-finite observation",
}


def has_cuda_kernels() -> bool:
    """Whether this build has the ops' CUDA kernels (a CUDA build of torch and nvcc)."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("dqnfast::replay_add", "CUDA")


def replay_add(storage: ReplayStorage, obs: torch.Tensor, next_obs: torch.Tensor,
               action: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
               truncated: torch.Tensor, env_ids: torch.Tensor, priority: Optional[torch.Tensor],
               frame_stack: int, n_step: int, alpha: float, priority_eps: float,
               num_actions: int) -> None:
    """Appends row i of the inputs to environment ``env_ids[i]`` of ``storage`` (in
    place); a prioritized storage gives the new transitions ``priority`` (raw, one per
    row) or, if None, the largest priority so far. A call whose ``next_obs`` does not
    continue its ``obs``, or with an action outside ``[0, num_actions)``
    (``num_actions`` 0: negative ones only), a non-finite reward or a non-finite float
    observation writes nothing: on the CPU it raises; on the GPU it adds 1 to
    ``storage.rejected_adds[0]`` and ORs the reasons' bits (``REJECTED_REASONS``) into
    ``storage.rejected_adds[1]`` instead."""
    s = storage
    _replay_add(s.frames, s.obs_pos, s.action, s.reward, s.terminated, s.truncated, s.counters,
                s.rejected_adds, s.priority, s.sum_tree, s.min_tree, s.max_priority, obs,
                next_obs, action, reward, terminated, truncated, env_ids, priority, frame_stack,
                n_step, alpha, priority_eps, num_actions)


def replay_add_frames(storage: ReplayStorage, frames: torch.Tensor, obs_pos: torch.Tensor,
                      action: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
                      truncated: torch.Tensor, env_ids: torch.Tensor,
                      priority: Optional[torch.Tensor], frame_stack: int, n_step: int,
                      alpha: float, priority_eps: float, num_actions: int) -> None:
    """Appends, in order, transition i with obs ``frames[p : p+k]`` and next_obs
    ``frames[p+1 : p+k+1]`` (``p = obs_pos[i]``) to environment ``env_ids[i]`` of a
    host ``storage`` (in place); otherwise as ``replay_add``."""
    s = storage
    _replay_add_frames(s.frames, s.obs_pos, s.action, s.reward, s.terminated, s.truncated,
                       s.counters, s.priority, s.sum_tree, s.min_tree, s.max_priority, frames,
                       obs_pos, action, reward, terminated, truncated, env_ids, priority,
                       frame_stack, n_step, alpha, priority_eps, num_actions)


def replay_sample(storage: ReplayStorage, random_bits: torch.Tensor, frame_stack: int,
                  n_step: int, gamma: float, beta: torch.Tensor,
                  out: Dict[str, torch.Tensor]) -> None:
    """Writes the n-step transitions picked by ``random_bits`` (one non-negative int64
    each) into the preallocated tensors of ``out`` (the fields of a ``Batch``): by
    priority if the storage has trees, else uniformly. ``beta`` is a float64 tensor
    of one element on the storage's device (a captured sample reads its value at each
    replay)."""
    s = storage
    _replay_sample(s.frames, s.obs_pos, s.action, s.reward, s.terminated, s.truncated,
                   s.counters, s.sum_tree, s.min_tree, random_bits, frame_stack, n_step, gamma,
                   beta, out["obs"], out["next_obs"], out["action"], out["reward"],
                   out["terminated"], out["discount"], out["index"], out["weight"])


def replay_update_priorities(storage: ReplayStorage, index: torch.Tensor,
                             priority: torch.Tensor, n_step: int, alpha: float,
                             priority_eps: float) -> None:
    """Sets the priorities of the transitions ``index`` names (as sample gave it)."""
    s = storage
    _replay_update_priorities(s.priority, s.sum_tree, s.min_tree, s.max_priority, s.counters,
                              index, priority, n_step, alpha, priority_eps)


def preprocess_frames(frames: torch.Tensor, prev_frames: Optional[torch.Tensor],
                      crop: Sequence[int], resize: Sequence[int], window: Sequence[int],
                      channels_first: bool, out: torch.Tensor) -> None:
    """Writes to ``out`` (N, window height, window width) uint8 the max of ``frames``
    and ``prev_frames`` (N, H, W, 3) uint8 (N, 3, H, W with ``channels_first``) in
    gray, ``crop`` (top, left, height, width) of it area-resized to ``resize``
    (height, width), then rows and columns ``window`` (top, left, height, width)."""
    _preprocess_frames(frames, prev_frames, list(crop), list(resize), list(window),
                       bool(channels_first), out)


def push_frames(stacks: torch.Tensor, frames: torch.Tensor, reset: Optional[torch.Tensor],
                out: torch.Tensor) -> None:
    """Writes to ``out`` the stacks (N, k, ...) with ``frames`` (N, ...) pushed in (the
    oldest dropped); where ``reset`` is true, k copies of the frame. ``out`` has the
    shape of ``stacks`` and shares no memory with it."""
    _push_frames(stacks, frames, reset, out)


# -- fake kernels: the shapes and dtypes the kernels check ------------------------------

def _check_dtype(tensor: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    torch._check(tensor.dtype == dtype, lambda: f"expected {dtype} {name}, got {tensor.dtype}")


def _check_shape(tensor: torch.Tensor, shape, name: str) -> None:
    shape = tuple(shape)
    torch._check(tuple(tensor.shape) == shape,
                 lambda: f"expected {name} of shape {shape}, got {tuple(tensor.shape)}")


def _check_storage(frames, obs_pos, action, reward, terminated, truncated, counters):
    torch._check(frames.dim() >= 2, lambda: f"expected frames (envs, frames, ...), got "
                                            f"{tuple(frames.shape)}")
    for name, ring, dtype in (("obs_pos", obs_pos, torch.int64), ("action", action, torch.int64),
                              ("reward", reward, torch.float32),
                              ("terminated", terminated, torch.bool),
                              ("truncated", truncated, torch.bool)):
        _check_dtype(ring, dtype, name)
        _check_shape(ring, obs_pos.shape, name)
    _check_dtype(counters, torch.int64, "counters")
    _check_shape(counters, (frames.shape[0], NUM_COUNTERS), "counters")


def _check_observations(frames: torch.Tensor, rows: int, frame_stack: int, **named) -> None:
    """Observations of ``rows`` rows, each a stack of ``frame_stack`` stored frames (one
    frame alone for 1), of the frames' dtype."""
    stack = (frame_stack,) if frame_stack > 1 else ()
    for name, observations in named.items():
        _check_dtype(observations, frames.dtype, name)
        _check_shape(observations, (rows, *stack, *frames.shape[2:]), name)


def _check_rows(rows: int, action, reward, terminated, truncated) -> None:
    for name, values, dtype in (("action", action, torch.int64), ("reward", reward, torch.float32),
                                ("terminated", terminated, torch.bool),
                                ("truncated", truncated, torch.bool)):
        _check_dtype(values, dtype, name)
        _check_shape(values, (rows,), name)


@torch.library.register_fake("dqnfast::replay_add")
def _replay_add_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                     rejected_adds, priority, sum_tree, min_tree, max_priority, obs, next_obs,
                     new_action, new_reward, new_terminated, new_truncated, env_ids,
                     new_priority, frame_stack, n_step, alpha, priority_eps, num_actions):
    _check_storage(frames, obs_pos, action, reward, terminated, truncated, counters)
    _check_dtype(env_ids, torch.int64, "env_ids")
    rows = env_ids.shape[0]
    _check_observations(frames, rows, frame_stack, obs=obs, next_obs=next_obs)
    _check_rows(rows, new_action, new_reward, new_terminated, new_truncated)


@torch.library.register_fake("dqnfast::replay_add_frames")
def _replay_add_frames_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                            priority, sum_tree, min_tree, max_priority, chunk_frames,
                            chunk_obs_pos, new_action, new_reward, new_terminated,
                            new_truncated, env_ids, new_priority, frame_stack, n_step, alpha,
                            priority_eps, num_actions):
    _check_storage(frames, obs_pos, action, reward, terminated, truncated, counters)
    _check_dtype(chunk_frames, frames.dtype, "frames")
    torch._check(tuple(chunk_frames.shape[1:]) == tuple(frames.shape[2:]),
                 lambda: f"expected frames of shape (-1, {tuple(frames.shape[2:])}), got "
                         f"{tuple(chunk_frames.shape)}")
    rows = env_ids.shape[0]
    for name, values in (("env_ids", env_ids), ("obs_pos", chunk_obs_pos)):
        _check_dtype(values, torch.int64, name)
        _check_shape(values, (rows,), name)
    _check_rows(rows, new_action, new_reward, new_terminated, new_truncated)


@torch.library.register_fake("dqnfast::replay_sample")
def _replay_sample_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                        sum_tree, min_tree, random_bits, frame_stack, n_step, gamma, beta,
                        out_obs, out_next_obs, out_action, out_reward, out_terminated,
                        out_discount, out_index, out_weight):
    _check_storage(frames, obs_pos, action, reward, terminated, truncated, counters)
    _check_dtype(random_bits, torch.int64, "random_bits")
    batch = random_bits.shape[0]
    _check_observations(frames, batch, frame_stack, out_obs=out_obs, out_next_obs=out_next_obs)
    for name, values, dtype in (("out_action", out_action, torch.int64),
                                ("out_reward", out_reward, torch.float32),
                                ("out_terminated", out_terminated, torch.bool),
                                ("out_discount", out_discount, torch.float32),
                                ("out_index", out_index, torch.int64),
                                ("out_weight", out_weight, torch.float32)):
        _check_dtype(values, dtype, name)
        _check_shape(values, (batch,), name)


@torch.library.register_fake("dqnfast::replay_update_priorities")
def _replay_update_priorities_fake(priority, sum_tree, min_tree, max_priority, counters, index,
                                   new_priority, n_step, alpha, priority_eps):
    _check_dtype(index, torch.int64, "index")
    _check_dtype(new_priority, torch.float32, "priority")
    torch._check(index.dim() == 1, lambda: f"expected index of shape (batch,), got "
                                           f"{tuple(index.shape)}")
    _check_shape(new_priority, index.shape, "priority")


@torch.library.register_fake("dqnfast::preprocess_frames")
def _preprocess_frames_fake(frames, prev_frames, crop, resize, window, channels_first, out):
    _check_dtype(frames, torch.uint8, "frames")
    torch._check(frames.dim() == 4, lambda: f"expected frames (N, H, W, 3), got "
                                            f"{tuple(frames.shape)}")
    if prev_frames is not None:
        _check_dtype(prev_frames, torch.uint8, "prev_frames")
        _check_shape(prev_frames, frames.shape, "prev_frames")
    _check_dtype(out, torch.uint8, "out")
    _check_shape(out, (frames.shape[0], window[2], window[3]), "out")


@torch.library.register_fake("dqnfast::push_frames")
def _push_frames_fake(stacks, frames, reset, out):
    _check_dtype(frames, stacks.dtype, "frames")
    torch._check(stacks.dim() >= 2, lambda: f"expected stacks (N, k, ...), got "
                                            f"{tuple(stacks.shape)}")
    _check_shape(frames, (stacks.shape[0], *stacks.shape[2:]), "frames")
    if reset is not None:
        _check_dtype(reset, torch.bool, "reset")
        _check_shape(reset, (stacks.shape[0],), "reset")
    _check_dtype(out, stacks.dtype, "out")
    _check_shape(out, stacks.shape, "out")
