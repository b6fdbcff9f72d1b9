"""Typed Python wrappers of the compiled ops, and their fake (meta) kernels.

The fakes let the ops be traced by ``torch.compile``: every op only writes into
tensors it is given, so its fake returns nothing. CUDA-graph capture is another
matter, decided by what each CUDA kernel does on the host: ``replay_sample``,
``replay_update_priorities`` and ``push_frames`` can be captured; ``preprocess_frames`` can once its geometry has run
outside the capture (its tables are uploaded to the GPU at that first call);
``replay_add`` cannot (it checks its env_ids on the host and uploads them at each
call), and raises if asked to.
"""
from typing import Optional

import torch

from dqnfast import _C  # noqa: F401  (registers torch.ops.dqnfast)

# The overloads themselves: calling them skips the overload lookup of each call.
_replay_add = torch.ops.dqnfast.replay_add.default
_replay_add_frames = torch.ops.dqnfast.replay_add_frames.default
_replay_sample = torch.ops.dqnfast.replay_sample.default
_replay_update_priorities = torch.ops.dqnfast.replay_update_priorities.default

# The bits of rejected_adds[1]: why the GPU rejected an add (csrc/replay_layout.h).
REJECTED_REASONS = {
    1: "a next_obs that does not continue its obs (next_obs[:, :-1] must equal obs[:, 1:])",
    2: "an action outside [0, num_actions)",
    4: "a non-finite reward",
    8: "a non-finite observation",
}


def replay_add(storage: dict, rejected_adds: torch.Tensor, obs: torch.Tensor,
               next_obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
               terminated: torch.Tensor, truncated: torch.Tensor, env_ids: torch.Tensor,
               priority: Optional[torch.Tensor], frame_stack: int, n_step: int, alpha: float,
               priority_eps: float, num_actions: int) -> None:
    """Appends row i of the inputs to environment ``env_ids[i]`` of the replay
    storage (in place); a prioritized storage gives the new transitions
    ``priority`` (raw, one per row) or, if None, the largest priority so far. A call
    whose ``next_obs`` does not continue its ``obs``, or with an action outside
    ``[0, num_actions)`` (``num_actions`` 0: negative ones only), a non-finite reward
    or a non-finite float observation writes nothing: on the CPU it raises; on the
    GPU it adds 1 to ``rejected_adds[0]`` and ORs the reasons' bits
    (``REJECTED_REASONS``) into ``rejected_adds[1]`` (two int64 on the storage's
    device) instead."""
    _replay_add(
        storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
        storage["terminated"], storage["truncated"], storage["counters"], rejected_adds,
        storage.get("priority"), storage.get("sum_tree"), storage.get("min_tree"),
        storage.get("max_priority"), obs, next_obs, action, reward, terminated, truncated,
        env_ids, priority, frame_stack, n_step, alpha, priority_eps, num_actions)


def replay_add_frames(storage: dict, frames: torch.Tensor, obs_pos: torch.Tensor,
                      action: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
                      truncated: torch.Tensor, env_ids: torch.Tensor,
                      priority: Optional[torch.Tensor], frame_stack: int, n_step: int,
                      alpha: float, priority_eps: float, num_actions: int) -> None:
    """Appends, in order, transition i with obs ``frames[p : p+k]`` and next_obs
    ``frames[p+1 : p+k+1]`` (``p = obs_pos[i]``) to environment ``env_ids[i]`` of a
    host replay storage (in place); otherwise as ``replay_add``."""
    _replay_add_frames(
        storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
        storage["terminated"], storage["truncated"], storage["counters"],
        storage.get("priority"), storage.get("sum_tree"), storage.get("min_tree"),
        storage.get("max_priority"), frames, obs_pos, action, reward, terminated, truncated,
        env_ids, priority, frame_stack, n_step, alpha, priority_eps, num_actions)


def replay_sample(storage: dict, random_bits: torch.Tensor, frame_stack: int, n_step: int,
                  gamma: float, beta: torch.Tensor, out: dict) -> None:
    """Writes the n-step transitions picked by ``random_bits`` (one non-negative int64
    each) into the preallocated tensors of ``out``: by priority if the storage has
    trees, else uniformly. ``beta`` is a float64 tensor of one element on the
    storage's device (a captured sample reads its value at each replay)."""
    _replay_sample(
        storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
        storage["terminated"], storage["truncated"], storage["counters"],
        storage.get("sum_tree"), storage.get("min_tree"), random_bits, frame_stack, n_step,
        gamma, beta, out["obs"], out["next_obs"], out["action"], out["reward"],
        out["terminated"], out["discount"], out["index"], out["weight"])


def replay_update_priorities(storage: dict, index: torch.Tensor, priority: torch.Tensor,
                             n_step: int, alpha: float, priority_eps: float) -> None:
    """Sets the priorities of the transitions ``index`` names (as sample gave it)."""
    _replay_update_priorities(
        storage["priority"], storage["sum_tree"], storage["min_tree"], storage["max_priority"],
        storage["counters"], index, priority, n_step, alpha, priority_eps)


@torch.library.register_fake("dqnfast::replay_add")
def _replay_add_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                     rejected_adds, priority, sum_tree, min_tree, max_priority, obs, next_obs,
                     new_action, new_reward, new_terminated, new_truncated, env_ids,
                     new_priority, frame_stack, n_step, alpha, priority_eps, num_actions):
    return None


@torch.library.register_fake("dqnfast::replay_add_frames")
def _replay_add_frames_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                            priority, sum_tree, min_tree, max_priority, chunk_frames,
                            chunk_obs_pos, new_action, new_reward, new_terminated,
                            new_truncated, env_ids, new_priority, frame_stack, n_step, alpha,
                            priority_eps, num_actions):
    return None


@torch.library.register_fake("dqnfast::replay_sample")
def _replay_sample_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                        sum_tree, min_tree, random_bits, frame_stack, n_step, gamma, beta,
                        out_obs, out_next_obs, out_action, out_reward, out_terminated,
                        out_discount, out_index, out_weight):
    return None


@torch.library.register_fake("dqnfast::replay_update_priorities")
def _replay_update_priorities_fake(priority, sum_tree, min_tree, max_priority, counters, index,
                                   new_priority, n_step, alpha, priority_eps):
    return None


@torch.library.register_fake("dqnfast::preprocess_frames")
def _preprocess_frames_fake(frames, prev_frames, crop, resize, window, channels_first, out):
    return None


@torch.library.register_fake("dqnfast::push_frames")
def _push_frames_fake(stacks, frames, reset, out):
    return None
