"""Typed Python wrappers of the compiled ops, and their fake (meta) kernels.

The fakes let the ops be traced by ``torch.compile``: every op only writes into
tensors it is given, so its fake returns nothing. CUDA-graph capture is another
matter, decided by what each CUDA kernel does on the host: ``replay_sample`` and
``push_frames`` can be captured; ``preprocess_frames`` can once its geometry has run
outside the capture (its tables are uploaded to the GPU at that first call);
``replay_add`` cannot (it checks its env_ids on the host and uploads them at each
call), and raises if asked to.
"""
import torch

from dqnfast import _C  # noqa: F401  (registers torch.ops.dqnfast)


def replay_add(storage: dict, rejected_adds: torch.Tensor, obs: torch.Tensor,
               next_obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
               terminated: torch.Tensor, truncated: torch.Tensor, env_ids: torch.Tensor,
               frame_stack: int) -> None:
    """Appends row i of the inputs to environment ``env_ids[i]`` of the replay
    storage (in place). On the GPU a call whose ``next_obs`` does not continue its
    ``obs`` writes nothing and adds 1 to ``rejected_adds`` (one int64 on the storage's
    device) instead of raising; on the CPU it raises."""
    torch.ops.dqnfast.replay_add(
        storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
        storage["terminated"], storage["truncated"], storage["counters"], rejected_adds,
        obs, next_obs, action, reward, terminated, truncated, env_ids, frame_stack)


def replay_sample(storage: dict, random_bits: torch.Tensor, frame_stack: int,
                  out: dict) -> None:
    """Writes the transitions picked by ``random_bits`` (one non-negative int64
    each) into the preallocated tensors of ``out``."""
    torch.ops.dqnfast.replay_sample(
        storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
        storage["terminated"], storage["counters"], random_bits, frame_stack,
        out["obs"], out["next_obs"], out["action"], out["reward"], out["terminated"])


@torch.library.register_fake("dqnfast::replay_add")
def _replay_add_fake(frames, obs_pos, action, reward, terminated, truncated, counters,
                     rejected_adds, obs, next_obs, new_action, new_reward, new_terminated,
                     new_truncated, env_ids, frame_stack):
    return None


@torch.library.register_fake("dqnfast::replay_sample")
def _replay_sample_fake(frames, obs_pos, action, reward, terminated, counters, random_bits,
                        frame_stack, out_obs, out_next_obs, out_action, out_reward,
                        out_terminated):
    return None


@torch.library.register_fake("dqnfast::preprocess_frames")
def _preprocess_frames_fake(frames, prev_frames, crop, resize, window, channels_first, out):
    return None


@torch.library.register_fake("dqnfast::push_frames")
def _push_frames_fake(stacks, frames, reset, out):
    return None
