"""gymnasium environments in a ``SyncVectorEnv`` behind ``VectorEnv``, and the options
(``max_episode_steps``, ``render``) they share."""
from typing import Optional

import numpy as np

from dqnfast.envs.base import VectorEnv
from dqnfast.envs.options import check_bool, check_int


class GymVectorEnv(VectorEnv):
    """gymnasium envs in a ``SyncVectorEnv`` with next-step autoreset (the default of
    gymnasium >= 1.0, set explicitly here); observations pass through ``_observe``."""

    def __init__(self, env_id: str, gym_id: str, num_envs: int, seed: int,
                 obs_shape, obs_dtype, frame_stack: int = 1, **gym_kwargs):
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        def make_one():
            return gym_make(gym_id, **gym_kwargs)

        self._env = SyncVectorEnv([make_one] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)
        self._seed: Optional[int] = seed
        super().__init__(env_id, num_envs, obs_shape, obs_dtype,
                         int(self._env.single_action_space.n), frame_stack)

    def _reset(self) -> np.ndarray:
        seed, self._seed = self._seed, None  # seed once; later resets go on from there
        obs, _ = self._env.reset(seed=seed)
        return self._observe(obs, np.ones(self.num_envs, bool))

    def _step(self, actions, reset_step, new_game):
        obs, reward, terminated, truncated, _ = self._env.step(actions.astype(np.int64))
        return self._observe(obs, reset_step), reward, terminated, truncated, True

    def _observe(self, obs: np.ndarray, new_episode: np.ndarray) -> np.ndarray:
        return obs

    def _render(self) -> np.ndarray:
        if self._env.envs[0].render_mode != "rgb_array":
            raise RuntimeError(f"{self.env_id}: made without render=True, so it has no screen")
        return self._env.envs[0].render()

    def _close(self) -> None:
        self._env.close()
        self._env = None


def gym_make(gym_id: str, **gym_kwargs):
    """``gymnasium.make``; where the env needs a package that is not installed, an
    ImportError with gymnasium's word on how to install it."""
    import gymnasium

    try:
        return gymnasium.make(gym_id, **gym_kwargs)
    except gymnasium.error.DependencyNotInstalled as error:
        raise ImportError(f"{gym_id} needs a package that is not installed: {error}") from None


def render_kwargs(opts: dict) -> dict:
    check_bool("render", opts["render"])
    return {"render_mode": "rgb_array"} if opts["render"] else {}


def time_limit_kwargs(opts: dict) -> dict:
    if opts["max_episode_steps"] is None:
        return {}
    check_int("max_episode_steps", opts["max_episode_steps"], minimum=1)
    return {"max_episode_steps": opts["max_episode_steps"]}

