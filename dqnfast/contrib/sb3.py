"""Stable-Baselines3 adapter: dqnfast's compiled replay buffer behind SB3's interface.

Usage::

    from stable_baselines3 import DQN
    from dqnfast.contrib.sb3 import DQNFastReplayBuffer

    model = DQN("CnnPolicy", env, replay_buffer_class=DQNFastReplayBuffer,
                replay_buffer_kwargs=dict(frame_stack=4))

With ``frame_stack=k > 1`` the observations must be channel-first stacks whose first
axis holds the ``k`` frames, oldest first: what ``VecFrameStack`` gives after
``VecTransposeImage`` (which SB3 adds itself for channel-last images), or
``VecFrameStack(..., channels_order="first")``. A first axis of ``k * c`` (frames of
``c`` channels each, e.g. RGB) is stored as ``k`` frames of ``c`` channels. Each frame
is then stored once instead of ``2 * k`` times.

n-step returns: ``replay_buffer_kwargs=dict(n_steps=3, gamma=0.99)``, the arguments
of SB3's own ``NStepReplayBuffer``; samples then carry SB3's ``discounts`` field, which
SB3's DQN uses in place of its ``gamma`` (the same ``gamma`` must be given to both).

Only ``Box`` observation spaces and ``Discrete`` action spaces are supported.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from dqnfast.replay_buffer import ReplayBuffer

__all__ = ["DQNFastReplayBuffer"]


class DQNFastReplayBuffer(SB3ReplayBuffer):
    """An SB3 ``ReplayBuffer`` that stores transitions in a ``dqnfast.ReplayBuffer``.

    Pass it as ``replay_buffer_class`` to DQN (or any off-policy algorithm with a
    ``Discrete`` action space); extra arguments go in ``replay_buffer_kwargs``:

    :param frame_stack: frames stacked along the first observation axis (see the
        module docstring); 1 stores whole observations.
    :param frame_capacity: frames held across all environments; dqnfast's default
        keeps a small reserve for episode starts (each episode of ``L`` steps takes
        ``L + frame_stack`` frames). Raise it for short episodes, else the oldest
        transitions leave before ``buffer_size`` is reached.
    :param seed: seed of the sampling generator; by default drawn from numpy's global
        generator (which SB3 seeds), so ``DQN(seed=...)`` samples reproducibly.
    :param n_steps: steps of the n-step return (as SB3's ``NStepReplayBuffer``): a
        sample's reward sums ``gamma**i * r_{t+i}`` over its window, which ends early at
        an episode's end; its next observation is the window's last, ``dones`` says
        whether the episode terminated within it and ``discounts`` is ``gamma**k`` for
        a window of ``k`` steps (0 where it terminated: SB3's target multiplies by
        ``1 - dones`` anyway). Unlike SB3's, a transition is sampled only once its
        window is complete (no window is cut short at the write cursor). 1 (the
        default) gives SB3's ``ReplayBuffer`` samples, ``discounts=None``.
    :param gamma: discount of the n-step return; give DQN the same.

    SB3's own arguments keep their meaning: ``buffer_size`` transitions in all,
    split evenly between the ``n_envs`` environments, and with
    ``handle_timeout_termination`` (default) a step that ``done`` marks while
    ``info["TimeLimit.truncated"]`` is set bootstraps from its terminal observation.
    ``optimize_memory_usage=True`` is refused: frames are already stored once.

    ``pos``, ``full`` and ``size()`` follow SB3 (rows of ``n_envs`` transitions
    written, capped at ``buffer_size // n_envs``); ``len(buffer)`` is the exact
    number of transitions that can be sampled, which is smaller when episode starts
    have used up the spare frames. Samples are drawn uniformly, with replacement, and
    are fresh tensors on ``device``, with the dtypes and shapes of SB3's buffer.
    Pickling (``save_replay_buffer`` / ``load_replay_buffer``) goes through the dqnfast
    buffer's ``state_dict``, sampling generator included.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Union[torch.device, str] = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        frame_stack: int = 1,
        frame_capacity: Optional[int] = None,
        seed: Optional[int] = None,
        n_steps: int = 1,
        gamma: float = 0.99,
    ):
        if not isinstance(observation_space, spaces.Box):
            raise TypeError(
                "DQNFastReplayBuffer supports only gymnasium.spaces.Box observation spaces, "
                f"got {observation_space!r}; use SB3's own ReplayBuffer (or DictReplayBuffer) for it")
        if not isinstance(action_space, spaces.Discrete):
            raise TypeError(
                "DQNFastReplayBuffer supports only gymnasium.spaces.Discrete action spaces, "
                f"got {action_space!r}")
        if optimize_memory_usage:
            raise ValueError(
                "DQNFastReplayBuffer stores every frame once already; pass "
                "optimize_memory_usage=False (SB3's default)")
        for name, value in (("buffer_size", buffer_size), ("n_envs", n_envs),
                            ("frame_stack", frame_stack), ("n_steps", n_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        # SB3's ReplayBuffer.__init__ would allocate its numpy arrays: set up only what
        # BaseBuffer does (spaces, obs_shape, action_dim, pos, full, device, n_envs).
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)  # per environment, as in SB3
        self.optimize_memory_usage = False
        self.handle_timeout_termination = bool(handle_timeout_termination)
        self.frame_stack = int(frame_stack)
        self.frame_capacity = frame_capacity
        self.n_steps = int(n_steps)
        self.gamma = gamma  # checked by the dqnfast buffer
        self._stored_obs_shape = _stored_shape(tuple(self.obs_shape), self.frame_stack)
        self._obs_dtype = observation_space.dtype
        self._action_dtype = _torch_dtype(action_space.dtype)
        if seed is None:
            seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
        self._rb: Optional[ReplayBuffer] = self._new_buffer(seed)
        self._pending_state: Optional[dict] = None  # set by unpickling, loaded on first use

    # -- the dqnfast buffer -------------------------------------------------------------

    def _new_buffer(self, seed: Optional[int]) -> ReplayBuffer:
        on_gpu = self.device.type == "cuda" and torch.cuda.is_available()
        rb = ReplayBuffer(
            self.buffer_size * self.n_envs, self._stored_obs_shape, num_envs=self.n_envs,
            frame_stack=self.frame_stack, obs_dtype=_torch_dtype(self._obs_dtype),
            device=self.device if on_gpu else "cpu", seed=seed, frame_capacity=self.frame_capacity,
            n_step=self.n_steps, gamma=self.gamma, num_actions=int(self.action_space.n))
        self.frame_capacity = rb.frame_capacity  # so that a rebuilt buffer has the same config
        return rb

    @property
    def dqnfast_buffer(self) -> ReplayBuffer:
        """The ``dqnfast.ReplayBuffer`` holding the transitions."""
        if self._rb is None:
            # First use after unpickling: build it now, on the device SB3 set meanwhile
            # (load_replay_buffer assigns `device` after unpickling).
            rb = self._new_buffer(seed=None)
            rb.load_state_dict(self._pending_state)
            self._rb, self._pending_state = rb, None
        return self._rb

    def __len__(self) -> int:
        """Transitions that can be sampled now, across all environments."""
        return len(self.dqnfast_buffer)

    def __bool__(self) -> bool:  # an empty buffer is still a buffer
        return True

    # -- adding -------------------------------------------------------------------------

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: List[Dict[str, Any]],
    ) -> None:
        """Adds one transition per environment (SB3's ``ReplayBuffer.add`` signature).

        ``next_obs`` is the true next observation: for done environments SB3 has put
        ``infos[i]["terminal_observation"]`` there already.
        """
        n = self.n_envs
        obs = self._stored_obs(obs, "obs")
        next_obs = self._stored_obs(next_obs, "next_obs")
        action = _per_env(action, n, "action").astype(np.int64, copy=False)
        reward = _per_env(reward, n, "reward").astype(np.float32, copy=False)
        done = _per_env(done, n, "done").astype(bool)
        if self.handle_timeout_termination:
            if len(infos) != n:
                raise ValueError(f"expected {n} infos (one per environment), got {len(infos)}")
            timeout = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos], dtype=bool)
            truncated = done & timeout
        else:
            truncated = np.zeros(n, dtype=bool)  # a timeout then counts as a termination
        terminated = done & ~truncated
        self.dqnfast_buffer.add(obs, action, reward, next_obs, terminated, truncated)
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _stored_obs(self, obs, name: str) -> np.ndarray:
        # SB3's buffer casts into its arrays of the space's dtype: cast likewise.
        obs = np.asarray(obs, dtype=self._obs_dtype)
        expected = (self.n_envs, *self.obs_shape)
        if obs.shape != expected:
            raise ValueError(f"expected {name} of shape {expected} (n_envs, *obs_shape), got {obs.shape}")
        return obs.reshape(self.n_envs, *self._stored_obs_shape)

    # -- sampling -----------------------------------------------------------------------

    def sample(self, batch_size: int, env: Optional[VecNormalize] = None) -> ReplayBufferSamples:
        """Samples ``batch_size`` transitions uniformly, with replacement.

        Returns SB3's ``ReplayBufferSamples``: observations of the space's dtype and
        shape (the policy converts them), actions ``(B, 1)`` of the action space's
        dtype, ``dones`` (terminated, not truncated) and rewards ``(B, 1)`` float32,
        all fresh tensors on ``device``; with ``n_steps > 1`` also ``discounts``
        ``(B, 1)`` float32. With ``env`` (a ``VecNormalize``), observations and
        rewards are normalized with its statistics, as SB3 does.
        """
        obs, action, reward, next_obs, terminated, discount = self._draw(batch_size)
        shape = (batch_size, *self.obs_shape)
        obs, next_obs = obs.reshape(shape), next_obs.reshape(shape)
        if env is None:
            observations = obs.to(self.device, copy=True)
            next_observations = next_obs.to(self.device, copy=True)
            rewards = reward.to(self.device, copy=True).reshape(batch_size, 1)
        else:
            observations = self.to_torch(self._normalize_obs(obs.cpu().numpy(), env))
            next_observations = self.to_torch(self._normalize_obs(next_obs.cpu().numpy(), env))
            rewards = self.to_torch(self._normalize_reward(reward.cpu().numpy().reshape(batch_size, 1), env))
        return ReplayBufferSamples(
            observations=observations,
            actions=action.to(self.device, dtype=self._action_dtype, copy=True).reshape(batch_size, 1),
            next_observations=next_observations,
            dones=terminated.to(self.device, dtype=torch.float32, copy=True).reshape(batch_size, 1),
            rewards=rewards,
            discounts=(None if self.n_steps == 1 else
                       discount.to(self.device, copy=True).reshape(batch_size, 1)),
        )

    def _draw(self, batch_size: int) -> Tuple[torch.Tensor, ...]:
        """(obs, action, reward, next_obs, terminated, discount) of ``batch_size``
        transitions.

        The tensors may be the dqnfast buffer's reused output tensors: copy them
        before the next draw.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        rb = self.dqnfast_buffer
        stored = len(rb)
        if stored == 0:
            raise ValueError("cannot sample from an empty replay buffer: add transitions first "
                             "(learning_starts > 0)")
        if batch_size <= stored:
            return _sb3_fields(rb.sample(int(batch_size)))
        # SB3 samples with replacement even from fewer transitions than batch_size
        # (learning_starts < batch_size); dqnfast refuses, so draw in parts.
        parts = []
        for start in range(0, batch_size, stored):
            parts.append([t.clone() for t in _sb3_fields(rb.sample(min(stored, batch_size - start)))])
        return tuple(torch.cat(tensors) for tensors in zip(*parts))

    def _get_samples(self, batch_inds: np.ndarray, env: Optional[VecNormalize] = None) -> ReplayBufferSamples:
        raise NotImplementedError("DQNFastReplayBuffer samples transitions itself and has no "
                                  "indexable arrays; call sample(batch_size, env)")

    # -- SB3 housekeeping ---------------------------------------------------------------

    def reset(self) -> None:
        """Empties the buffer."""
        self._rb = self._pending_state = None  # free the old storage before allocating anew
        self._rb = self._new_buffer(seed=int(np.random.randint(0, 2**63 - 1, dtype=np.int64)))
        super().reset()

    def __getstate__(self) -> dict:
        # The dqnfast buffer holds a threading.Lock and cached output tensors: pickle its
        # state_dict instead, as numpy arrays (pickled in-band without extra copies).
        state = self.__dict__.copy()
        inner = self._rb.state_dict() if self._rb is not None else self._pending_state
        state["_rb"] = None
        state["_pending_state"] = {
            "config": inner["config"],
            "storage": {name: tensor.numpy() for name, tensor in inner["storage"].items()},
            "generator": inner["generator"].numpy(),
        }
        return state

    def __setstate__(self, state: dict) -> None:
        pending = state["_pending_state"]
        state["_pending_state"] = {
            "config": pending["config"],
            "storage": {name: _as_tensor(array) for name, array in pending["storage"].items()},
            "generator": _as_tensor(pending["generator"]),
        }
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(len={len(self)}, buffer_size={self.buffer_size} per env, "
                f"n_envs={self.n_envs}, obs_shape={self.obs_shape}, frame_stack={self.frame_stack}, "
                f"n_steps={self.n_steps}, device={self.device})")


def _sb3_fields(batch) -> Tuple[torch.Tensor, ...]:
    """(obs, action, reward, next_obs, terminated, discount): the fields SB3's samples
    hold."""
    return batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated, batch.discount


def _stored_shape(obs_shape: Tuple[int, ...], frame_stack: int) -> Tuple[int, ...]:
    """The dqnfast ``obs_shape`` for SB3 observations of ``obs_shape``."""
    if frame_stack == 1:
        return obs_shape if obs_shape else (1,)
    if not obs_shape or obs_shape[0] % frame_stack != 0:
        raise ValueError(
            f"with frame_stack={frame_stack}, observations must stack their frames along the "
            f"first axis (a multiple of {frame_stack}), got observation shape {obs_shape}; for "
            "images use VecFrameStack with VecTransposeImage (SB3 adds it for channel-last "
            "images) or VecFrameStack(..., channels_order='first')")
    channels = obs_shape[0] // frame_stack
    if channels == 1 and len(obs_shape) > 1:
        return obs_shape  # (k, H, W): one single-channel frame per entry
    return (frame_stack, channels, *obs_shape[1:])


def _per_env(value, n_envs: int, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.size != n_envs:
        raise ValueError(f"expected one {name} per environment (n_envs={n_envs}), got shape {array.shape}")
    return array.reshape(n_envs)


def _torch_dtype(dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    if not array.flags.writeable:  # torch.from_numpy warns about read-only arrays
        array = array.copy()
    return torch.from_numpy(array)
