"""Any registered gymnasium environment with discrete actions and a vector state, by
its id: Acrobot-v1, MountainCar-v0, LunarLander-v3 (with ``gymnasium[box2d]``),
CartPole-v1, ...

The observation space must be a 1-D ``Box``; observations come as float32 of its
shape, whatever the Box's dtype, with ``frame_stack`` 1. Other spaces are refused
rather than flattened: a screen flattened into an MLP is rarely what one wants (the
pixel environments here crop, shrink and stack their frames), and a ``Discrete``
state index needs an encoding (FrozenLake-v1 has its one-hot one in ``gym_classic``).
Continuous actions are refused too: DQN picks one of finitely many actions. Both
are checked on one env before ``num_envs`` of them are made.

Options: ``max_episode_steps`` (default: the registered time limit) and ``render``
(``render=True`` lets ``render()`` draw env 0's screen).
"""
from typing import Optional, Tuple

import numpy as np
import torch

from dqnfast.envs.gym_vector import GymVectorEnv, gym_make, render_kwargs, time_limit_kwargs
from dqnfast.envs.options import with_defaults
from dqnfast.extras import importable


class GymVectorState(GymVectorEnv):
    def __init__(self, env_id, num_envs, seed, options):
        opts = with_defaults(env_id, options, {"max_episode_steps": None, "render": False})
        gym_kwargs = {**render_kwargs(opts), **time_limit_kwargs(opts)}
        probe = gym_make(env_id, **gym_kwargs)
        try:
            obs_shape = _vector_state_shape(env_id, probe.action_space, probe.observation_space)
        finally:
            probe.close()
        super().__init__(env_id, env_id, num_envs, seed, obs_shape, torch.float32, **gym_kwargs)

    def _observe(self, obs, new_episode):
        return obs.astype(np.float32, copy=False)


def _vector_state_shape(env_id: str, action_space, observation_space) -> Tuple[int]:
    """The observation shape, once the spaces are known to suit a DQN with an MLP."""
    from gymnasium import spaces

    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"{env_id} has the action space {action_space!r}; DQN needs a "
                         f"discrete one (gymnasium.spaces.Discrete)")
    if action_space.start != 0:
        raise ValueError(f"{env_id} has the action space {action_space!r}; expected "
                         f"actions numbered from 0")
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 1):
        raise ValueError(f"{env_id} has the observation space {observation_space!r}; expected "
                         f"a 1-D Box (a vector state). Images run as '<Game>-v5' (Atari) or "
                         f"CartPole-pixels; FrozenLake-v1 makes its state index one-hot")
    return tuple(observation_space.shape)


def is_registered(env_id: str) -> bool:
    if not importable("gymnasium"):
        return False
    import gymnasium
    return env_id in gymnasium.registry


def registered_ids() -> Tuple[str, ...]:
    """gymnasium's ids, without the Atari ones ale-py registers (they run as "<Game>-v5")."""
    if not importable("gymnasium"):
        return ()
    import gymnasium
    return tuple(sorted(env_id for env_id, spec in gymnasium.registry.items()
                        if not str(spec.entry_point).startswith("ale_py")))


def reward_threshold(env_id: str) -> Optional[float]:
    """The return at which gymnasium calls ``env_id`` solved (its spec's
    ``reward_threshold``: Acrobot-v1 -100, MountainCar-v0 -110, LunarLander-v3 200), or
    None where it names none or does not know ``env_id``."""
    if not is_registered(env_id):
        return None
    import gymnasium
    threshold = gymnasium.registry[env_id].reward_threshold
    return None if threshold is None else float(threshold)
