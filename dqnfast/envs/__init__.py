"""Vectorized environments for DQN: one interface over envpool, ALE and gymnasium.

``make(env_id, num_envs, seed, **options)`` returns a ``VectorEnv``; the training loop
needs nothing else::

    env = dqnfast.envs.make("Pong-v5", num_envs=8, seed=0)
    buffer = dqnfast.ReplayBuffer(100_000, env.obs_shape, num_envs=env.num_envs,
                                  frame_stack=env.frame_stack, obs_dtype=env.obs_dtype)
    obs = env.reset()                                    # numpy (num_envs, *obs_shape)
    while training:
        next_obs, reward, terminated, truncated, info = env.step(actions)
        live = np.flatnonzero(~info["reset_step"])       # the steps that are transitions
        buffer.add(obs[live], actions[live], reward[live], next_obs[live],
                   terminated[live], truncated[live], env_ids=live)
        returns += list(info["episode_return"][info["episode_done"]])
        obs = next_obs

Semantics, the same for every environment:

* Next-step autoreset (envpool's and gymnasium's default). The step that ends an
  episode returns its true final observation; the next ``step`` ignores that env's
  action and returns the first observation of a new episode, with
  ``info["reset_step"]`` true, reward 0 and no termination. Such a step is not a
  transition: leave it out of the replay buffer (``env_ids`` above).
* ``terminated`` (the MDP ended: do not bootstrap) and ``truncated`` (a time limit:
  bootstrap from the final observation) are kept apart.
* With ``episodic_life`` (Atari, on by default) losing a life is ``terminated`` for
  learning, and the next step is a reset step, but the game goes on:
  ``info["episode_done"]`` is true only when the whole game ends (or is truncated),
  and ``info["episode_return"]`` (the unclipped score, NaN where no episode ended)
  and ``info["episode_length"]`` (agent steps, reset steps not counted; 0 where no
  episode ended) add up all its lives.
* Observations are fresh numpy arrays each step (never overwritten later), of
  ``env.obs_dtype`` (uint8 frames or float32 vectors); stacked frames come first in
  ``obs_shape``, ``env.frame_stack`` of them (1 for vector states), and
  ``next_obs[:, :-1] == obs[:, 1:]`` on every step that is not a reset step, as
  ``ReplayBuffer(frame_stack=...)`` requires.

Environments, each in its own module:

========================  ================================================================
``"<Game>-v5"``           Atari through envpool (default where installed,
                          ``envpool_atari``) or ALE's ``AtariVectorEnv``
                          (``backend="ale"``, ``ale_atari``); ``"ALE/<Game>-v5"`` too.
                          uint8 (4, 84, 84) with the DeepMind settings; the options, the
                          two preprocessing modes and their speed: ``atari``.
``"CartPole-v1"``,        gymnasium's classic control and toy text with presets of their
``"FrozenLake-v1"``,      own (``gym_classic``).
``"CartPole-pixels"``
any other gymnasium id    with discrete actions and a 1-D ``Box`` observation: Acrobot-v1,
                          MountainCar-v0, LunarLander-v3 (``gymnasium[box2d]``), ...;
                          float32 states (``gym_generic``).
========================  ================================================================

``VectorEnv`` (``base``) is the interface, and the option checks all environments
share are in ``options``.
"""
import difflib

from dqnfast.envs.ale_atari import AleAtari
from dqnfast.envs.atari import atari_game, atari_games, atari_options, env_threads
from dqnfast.envs.base import VectorEnv
from dqnfast.envs.envpool_atari import EnvpoolAtari
from dqnfast.envs.gym_classic import CLASSIC_ENV_IDS, CLASSIC_MAKERS
from dqnfast.envs.gym_generic import (GymVectorState, is_registered, registered_ids,
                                      reward_threshold)
from dqnfast.envs.options import check_int

__all__ = ["VectorEnv", "make", "atari_game", "atari_games", "env_threads", "CLASSIC_ENV_IDS",
           "is_generic_gymnasium", "render_options", "reward_threshold"]


def make(env_id: str, num_envs: int = 1, seed: int = 0, **options) -> VectorEnv:
    """Makes ``num_envs`` copies of ``env_id`` behind one ``VectorEnv`` interface.

    ``env_id``: an Atari game as ``"<Game>-v5"`` (e.g. ``"Pong-v5"``, also
    ``"ALE/Pong-v5"``), ``"CartPole-v1"``, ``"FrozenLake-v1"``, ``"CartPole-pixels"`` or
    any other gymnasium id with discrete actions and a 1-D Box observation.
    Env ``i`` is seeded from ``seed`` and ``i``. ``options`` depend on the env (each
    env's module): Atari takes ``noop_max``, ``frame_skip``, ``fire_reset``,
    ``episodic_life``, ``reward_clip``, ``repeat_action_probability``,
    ``max_episode_frames``, ``frame_stack``, ``img_size``, ``full_action_space``,
    ``num_threads``, ``backend`` and ``preprocess``; CartPole-v1 ``max_episode_steps``
    and ``render``; FrozenLake-v1 ``is_slippery``, ``map_name``, ``max_episode_steps``
    and ``render`` (``render=True`` lets ``render()`` draw the screen);
    CartPole-pixels ``frame_stack``, ``img_size`` and ``max_episode_steps``; any other
    gymnasium id ``max_episode_steps`` and ``render``.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str, got {type(env_id).__name__}")
    check_int("num_envs", num_envs, minimum=1)
    check_int("seed", seed, minimum=0)
    if env_id in CLASSIC_MAKERS:
        return CLASSIC_MAKERS[env_id](env_id, num_envs, seed, options)
    if atari_game(env_id) is not None:
        return _make_atari(env_id, num_envs, seed, options)
    if is_registered(env_id):
        return GymVectorState(env_id, num_envs, seed, options)
    raise ValueError(_unknown_env_message(env_id))


def is_generic_gymnasium(env_id: str) -> bool:
    """Whether ``make`` runs ``env_id`` as "any other gymnasium id" (``gym_generic``):
    registered with gymnasium, neither Atari nor one of ``CLASSIC_ENV_IDS``."""
    return (env_id not in CLASSIC_MAKERS and atari_game(env_id) is None
            and is_registered(env_id))


def render_options(env_id: str) -> dict:
    """The ``make`` options with which ``render()`` shows ``env_id``'s screen: Atari's
    raw frames, gymnasium's drawing (CartPole-pixels draws it anyway)."""
    if env_id == "CartPole-pixels":
        return {}
    if atari_game(env_id) is not None:
        return {"preprocess": "dqnfast"}
    return {"render": True}


def _make_atari(env_id: str, num_envs: int, seed: int, options: dict) -> VectorEnv:
    opts = atari_options(env_id, options)
    backend = opts["backend"]
    game = atari_game(env_id, backend)
    if game is None:
        raise ValueError(f"{env_id!r} is not among the games of backend={backend!r}; "
                         f"try the other backend")
    if backend == "envpool":
        return EnvpoolAtari(env_id, game, num_envs, seed, opts)
    return AleAtari(env_id, game, num_envs, seed, opts)


def _unknown_env_message(env_id: str) -> str:
    games = atari_games()
    known = list(CLASSIC_ENV_IDS) + list(games) + list(registered_ids())
    close = difflib.get_close_matches(env_id.removeprefix("ALE/"), known, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    gymnasium = ("any gymnasium id with discrete actions and a 1-D Box observation "
                 "(Acrobot-v1, MountainCar-v0, ...)")
    if games:
        atari = (f"and the {len(games)} Atari games as '<Game>-v5' (envpool or ale-py): "
                 f"{', '.join(games)}")
    else:
        atari = "(Atari games need envpool or ale-py: pip install 'dqnfast[envs]')"
    return (f"unknown env_id {env_id!r}.{hint} Supported: {', '.join(CLASSIC_ENV_IDS)}, "
            f"{gymnasium} {atari}")
