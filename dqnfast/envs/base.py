"""The interface every environment here implements: ``VectorEnv``, ``num_envs``
environments stepped together, with the episode books and the worker thread of
``step_async`` kept here once for all backends (semantics: ``dqnfast.envs``).
"""
import concurrent.futures
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[int]]

_SENT = object()  # the pending step of an env that sent it natively (envpool)


class VectorEnv:
    """``num_envs`` environments stepped together (see the ``dqnfast.envs`` docstring).

    Attributes: ``num_envs``, ``obs_shape`` (one env's observation), ``obs_dtype``
    (a torch dtype, for ``ReplayBuffer(obs_dtype=...)``), ``num_actions`` (actions are
    ints in ``range(num_actions)``), ``frame_stack`` (frames stacked first in
    ``obs_shape``, 1 when observations are not stacks) and ``env_id``.

    Subclasses implement ``_reset() -> obs`` and ``_step(actions, reset_step,
    new_game) -> (obs, raw_reward, terminated, truncated, game_over)``, where
    ``reset_step`` marks the envs that this step resets, ``new_game`` those of them
    that start a new game (not just a new life) and ``game_over`` says which
    terminations end the whole episode. This class keeps the episode books.
    """

    def __init__(self, env_id: str, num_envs: int, obs_shape: Tuple[int, ...],
                 obs_dtype: torch.dtype, num_actions: int, frame_stack: int,
                 reward_clip: bool = False):
        self.env_id = env_id
        self.num_envs = num_envs
        self.obs_shape = tuple(obs_shape)
        self.obs_dtype = obs_dtype
        self.num_actions = num_actions
        self.frame_stack = frame_stack
        self._reward_clip = reward_clip
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._resetting: Optional[np.ndarray] = None  # None until the first reset()
        self._new_game = np.zeros(num_envs, bool)
        self._closed = False
        self._worker: Optional[concurrent.futures.ThreadPoolExecutor] = None  # step_async's
        self._pending = None  # the step started by step_async: a Future, or _SENT

    def reset(self) -> np.ndarray:
        """Resets every environment; returns the first observations."""
        self._check_open()
        self._check_no_step_pending()
        obs = self._reset()
        self._returns[:] = 0
        self._lengths[:] = 0
        self._resetting = np.zeros(self.num_envs, bool)
        self._new_game = np.zeros(self.num_envs, bool)  # (the last info may hold the old)
        return obs

    def step(self, actions: ArrayLike):
        """Takes one action per env: returns ``(obs, reward, terminated, truncated,
        info)``, numpy arrays with leading dim ``num_envs``; ``reward`` float32 (clipped
        where the env clips), ``terminated``/``truncated`` bool, and ``info`` with
        ``reset_step``, ``episode_done`` (bool), ``episode_return`` (float64, unclipped,
        NaN where no episode ended) and ``episode_length`` (int64, 0 where none ended).
        """
        self._check_ready()
        return self._step_checked(self._check_actions(actions))

    def _step_checked(self, actions: np.ndarray):
        return self._book(*self._step(actions, self._resetting, self._new_game))

    def _book(self, obs, raw_reward, terminated, truncated, game_over):
        """The episode books of one step, and its returned tuple."""
        reset_step = self._resetting
        raw_reward = np.asarray(raw_reward, np.float64)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)

        self._returns += raw_reward
        self._lengths += ~reset_step
        episode_done = truncated | (terminated & np.asarray(game_over, bool))
        episode_return = np.where(episode_done, self._returns, np.nan)
        episode_length = np.where(episode_done, self._lengths, 0)
        self._returns[episode_done] = 0
        self._lengths[episode_done] = 0

        reward = np.sign(raw_reward) if self._reward_clip else raw_reward
        reward = np.where(reset_step, 0.0, reward).astype(np.float32)
        self._resetting = terminated | truncated
        self._new_game = episode_done
        info = {"reset_step": reset_step, "episode_done": episode_done,
                "episode_return": episode_return, "episode_length": episode_length}
        return obs, reward, terminated, truncated, info

    def step_async(self, actions: ArrayLike) -> None:
        """Starts ``step(actions)`` and returns at once; ``step_wait()`` returns its
        result. Meanwhile the caller can update its network. envpool steps on its own
        threads (its send/recv); other envs step on a worker thread (ALE steps in C++
        and torch's ops release the GIL, so both run at once). Bad actions raise here,
        before anything starts."""
        self._check_ready()
        actions = self._check_actions(actions)
        if self._sends_async:
            self._send(actions)
            self._pending = _SENT
            return
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"dqnfast-{self.env_id}")
        self._pending = self._worker.submit(self._step_checked, actions)

    def step_wait(self):
        """The result of the step started by ``step_async`` (see ``step``)."""
        self._check_open()
        if self._pending is None:
            raise RuntimeError(f"{self.env_id}: step_wait() without a step_async() before it")
        pending, self._pending = self._pending, None
        if pending is _SENT:
            return self._book(*self._recv(self._resetting, self._new_game))
        return pending.result()

    def render(self) -> np.ndarray:
        """Env 0's screen after the last reset or step: (H, W, 3) uint8 RGB."""
        self._check_open()
        self._check_no_step_pending()
        return self._render()

    def close(self) -> None:
        """Releases the environments (and their threads); the env is unusable after."""
        if not self._closed:
            if self._worker is not None:
                self._worker.shutdown(wait=True)  # lets a step in flight finish first
            self._worker = self._pending = None
            self._closed = True
            self._close()

    def __enter__(self) -> "VectorEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.env_id!r}, num_envs={self.num_envs}, "
                f"obs_shape={self.obs_shape}, obs_dtype={self.obs_dtype}, "
                f"num_actions={self.num_actions})")

    # -- for subclasses --

    def _reset(self) -> np.ndarray:
        raise NotImplementedError

    def _step(self, actions: np.ndarray, reset_step: np.ndarray, new_game: np.ndarray):
        raise NotImplementedError

    # Envs with a native asynchronous step set _sends_async and split _step in two.
    _sends_async = False

    def _send(self, actions: np.ndarray) -> None:
        raise NotImplementedError

    def _recv(self, reset_step: np.ndarray, new_game: np.ndarray):
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _render(self) -> np.ndarray:
        raise NotImplementedError(f"{self.env_id}: this env has no screen to render")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.env_id}: this env was closed")

    def _check_no_step_pending(self) -> None:
        if self._pending is not None:
            raise RuntimeError(f"{self.env_id}: a step_async() is in flight; call step_wait() first")

    def _check_ready(self) -> None:
        self._check_open()
        self._check_no_step_pending()
        if self._resetting is None:
            raise RuntimeError(f"{self.env_id}: call reset() before the first step()")

    def _check_actions(self, actions: ArrayLike) -> np.ndarray:
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"{self.env_id}: expected actions as ints of shape "
                             f"({self.num_envs},), got {actions.dtype} {actions.shape}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"{self.env_id}: actions must lie in [0, {self.num_actions}), "
                             f"got {actions.min()}..{actions.max()}")
        return actions.astype(np.int32, copy=False)
