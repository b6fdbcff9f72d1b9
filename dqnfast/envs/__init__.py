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

Environments:

========================  ================================================================
``"<Game>-v5"``           Atari through envpool (default where installed) or ALE's
                          ``AtariVectorEnv`` (``backend="ale"``); ``"ALE/<Game>-v5"`` too.
                          uint8 (4, 84, 84) with the DeepMind settings below.
``"CartPole-v1"``         float32 (4,) state, gymnasium ``SyncVectorEnv``.
``"FrozenLake-v1"``       one-hot float32 (16,) state, slippery by default.
``"CartPole-pixels"``     CartPole as the pixel tutorials see it: the rendered 600x400
                          screen, rows 40%..80% (the cart and pole band) and a window 30%
                          of the width centred on the cart, gray, area-resized to
                          ``img_size`` and stacked: uint8 (4, 84, 84). Needs pygame.
========================  ================================================================

Atari options (DeepMind's defaults): ``noop_max=30`` (a random 1..30 no-ops after
each game reset, the last one FIRE with ``fire_reset``; 0 acts as 1),
``frame_skip=4`` (repeat each action 4 frames, max-pool the last two),
``fire_reset=True`` (press FIRE at reset in games that have it),
``episodic_life=True``, ``reward_clip=True`` (rewards -1/0/+1; returns stay
unclipped), ``repeat_action_probability=0.0`` (sticky actions off),
``max_episode_frames=108_000`` (30 minutes of play; truncated after
``max_episode_frames // frame_skip`` steps), ``frame_stack=4``, ``img_size=(84, 84)``,
``full_action_space=False``, ``num_threads=0`` (the backend's choice),
``backend=None`` ("envpool" if installed, else "ale") and ``preprocess=None``:
"native" (the backend emits gray ``img_size`` frames) or "dqnfast" (the backend
emits max-pooled RGB frames, 210x160, and dqnfast's ``preprocess_frames`` and
``push_frames`` make the gray stacks).

Which Atari mode is the default: "native", for both backends, because it is the
faster. Env steps per second, Pong-v5, 8 envs, random actions, everything this
module does included (``benchmarks/bench_envs.py``), on the project machine (2-core
CPU, no GPU, shared with other work: best rounds of quiet moments, and medians while
another process kept one core busy):

    mode                  quiet          one core busy
    envpool, native       ~7,000         3,800
    envpool, dqnfast      ~5,000         3,250
    ALE,     native       ~7,500         3,950
    ALE,     dqnfast      ~5,500-6,900   3,850
    (CartPole-v1 ~145,000; FrozenLake-v1 ~135,000; CartPole-pixels ~1,000-1,100)

The dqnfast mode moves 100,800 bytes of RGB per env step out of the emulator (12x
one 84x84 gray frame) and converts them on the stepping thread, where envpool and
ALE convert inside their worker threads, in parallel with emulation; envpool also
transposes its RGB frames to channels-first pixel by pixel, which is why its
dqnfast mode is the slowest. (ALE's native mode here takes one gray frame per step
from ALE and stacks it with ``push_frames``; see ``_AleAtari``.)

Agreement of the two modes (same seeds and actions: same rewards, terminations and
resets; observations compared in ``tests/test_envs.py``). Gray: envpool and ALE map
each frame with ALE's palette table (its NTSC colours' luminance), dqnfast computes
0.299 R + 0.587 G + 0.114 B (rounded); both resize by area (OpenCV's INTER_AREA,
dqnfast's kernel). On single frames (reset observations) the two agree within one
gray level everywhere, exactly on more than 99.9% of the pixels. Max-pool: envpool
and ALE take the max of the last two frames after converting them to gray; dqnfast
gets the max of each RGB channel (as DeepMind's paper describes it) and converts
that. Those agree wherever an object moves over black (Breakout: within one level
everywhere), but where a moving object overlaps another colour between the two
frames the RGB max is brighter (and it is never darker by more than one level):
measured over 300 steps, 4 envs, Pong 99.94% of the pixels exact, 0.06% brighter
by up to 16 levels (the paddles' edges); MsPacman (flickering ghosts) 99.4% exact,
0.5% brighter by 2 to 43 levels.

Episodic life differs a little between the backends: after a life loss envpool
takes 1..``noop_max`` no-ops and FIRE (as at a game reset, without restarting the
game); with ALE, whose own ``episodic_life`` restarts the whole game, dqnfast asks it
only to report life losses and spends the reset step on one FIRE (or NOOP) step, as
OpenAI Baselines' ``EpisodicLifeEnv`` with ``FireResetEnv`` does. Either way the frame
stack is refilled with copies of the first frame only at the start of a game.
"""
import concurrent.futures
import difflib
import os
import re
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from dqnfast.preprocess import preprocess_frames, push_frames

__all__ = ["VectorEnv", "make", "atari_games", "CLASSIC_ENV_IDS"]

CLASSIC_ENV_IDS = ("CartPole-v1", "FrozenLake-v1", "CartPole-pixels")

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[int]]

_ATARI_DEFAULTS: Dict[str, Any] = {
    "noop_max": 30,
    "frame_skip": 4,
    "fire_reset": True,
    "episodic_life": True,
    "reward_clip": True,
    "repeat_action_probability": 0.0,
    "max_episode_frames": 108_000,
    "frame_stack": 4,
    "img_size": (84, 84),
    "full_action_space": False,
    "num_threads": 0,
    "backend": None,
    "preprocess": None,
}
_ATARI_RAW_SIZE = (210, 160)  # the ALE screen, (height, width)


# -- the interface ----------------------------------------------------------------------

_SENT = object()  # the pending step of an env that sent it natively (envpool)


class VectorEnv:
    """``num_envs`` environments stepped together (see the module docstring).

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


def make(env_id: str, num_envs: int = 1, seed: int = 0, **options) -> VectorEnv:
    """Makes ``num_envs`` copies of ``env_id`` behind one ``VectorEnv`` interface.

    ``env_id``: an Atari game as ``"<Game>-v5"`` (e.g. ``"Pong-v5"``, also
    ``"ALE/Pong-v5"``), ``"CartPole-v1"``, ``"FrozenLake-v1"`` or ``"CartPole-pixels"``.
    Env ``i`` is seeded from ``seed`` and ``i``. ``options`` depend on the env (see the
    module docstring): Atari takes ``noop_max``, ``frame_skip``, ``fire_reset``,
    ``episodic_life``, ``reward_clip``, ``repeat_action_probability``,
    ``max_episode_frames``, ``frame_stack``, ``img_size``, ``full_action_space``,
    ``num_threads``, ``backend`` and ``preprocess``; CartPole-v1 ``max_episode_steps``
    and ``render``; FrozenLake-v1 ``is_slippery``, ``map_name``, ``max_episode_steps``
    and ``render`` (``render=True`` lets ``render()`` draw the screen);
    CartPole-pixels ``frame_stack``, ``img_size`` and ``max_episode_steps``.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str, got {type(env_id).__name__}")
    _check_int("num_envs", num_envs, minimum=1)
    _check_int("seed", seed, minimum=0)
    if env_id in _CLASSIC_MAKERS:
        return _CLASSIC_MAKERS[env_id](env_id, num_envs, seed, options)
    if _atari_game(env_id) is None:
        raise ValueError(_unknown_env_message(env_id))
    return _make_atari(env_id, num_envs, seed, options)


def atari_games() -> Tuple[str, ...]:
    """The Atari games the installed backends know, as ``make`` ids ("Pong-v5", ...)."""
    return tuple(sorted(_camel(rom) + "-v5" for rom in _atari_roms()))


# -- Atari -----------------------------------------------------------------------------

def _make_atari(env_id: str, num_envs: int, seed: int, options: dict) -> VectorEnv:
    opts = _with_defaults(env_id, options, _ATARI_DEFAULTS)
    backend = opts["backend"]
    if backend is None:
        backend = "envpool" if _importable("envpool") else "ale"
    if backend not in ("envpool", "ale"):
        raise ValueError(f"backend must be 'envpool' or 'ale' (or None: envpool if "
                         f"installed), got {backend!r}")
    preprocess = opts["preprocess"]
    if preprocess is None:
        preprocess = "native"
    if preprocess == backend:  # "envpool" / "ale": the backend's own pipeline
        preprocess = "native"
    if preprocess not in ("native", "dqnfast"):
        raise ValueError(f"preprocess must be 'native' (the backend's own: also spelt "
                         f"'{backend}') or 'dqnfast', got {preprocess!r}")
    for name in ("noop_max",):
        _check_int(name, opts[name], minimum=0)
    for name in ("frame_skip", "max_episode_frames", "frame_stack"):
        _check_int(name, opts[name], minimum=1)
    _check_int("num_threads", opts["num_threads"], minimum=0)
    for name in ("fire_reset", "episodic_life", "reward_clip", "full_action_space"):
        _check_bool(name, opts[name])
    _check_probability("repeat_action_probability", opts["repeat_action_probability"])
    opts["img_size"] = _check_size("img_size", opts["img_size"], _ATARI_RAW_SIZE)
    opts["preprocess"] = preprocess
    if not _importable({"envpool": "envpool", "ale": "ale_py"}[backend]):
        raise ImportError(f"backend={backend!r} needs the {backend} package: "
                          f"pip install 'dqnfast[envs]'")
    game = _atari_game(env_id, backend)
    if game is None:
        raise ValueError(f"{env_id!r} is not among the games of backend={backend!r}; "
                         f"try the other backend")
    if backend == "envpool":
        return _EnvpoolAtari(env_id, game, num_envs, seed, opts)
    return _AleAtari(env_id, game, num_envs, seed, opts)


class _FrameStacks:
    """Frame stacks kept by dqnfast: one new frame per env and step in, a fresh
    (num_envs, k, H, W) uint8 stack out, k copies of the frame where a game starts.
    Each step writes new stacks from the previous ones (``push_frames`` is out of
    place), so arrays already handed out never change, without copying them first. ``rgb`` ("channels_first" or
    "channels_last") turns max-pooled RGB frames into gray ``img_size`` ones first
    (the "dqnfast" mode); ``rgb=None`` takes gray frames as they are."""

    def __init__(self, num_envs: int, frame_stack: int, img_size: Tuple[int, int],
                 rgb: Optional[str]):
        self.rgb = rgb
        self.last_rgb: Optional[np.ndarray] = None  # the last RGB frames pushed
        self.img_size = img_size
        self.stacks = torch.zeros((num_envs, frame_stack, *img_size), dtype=torch.uint8)
        self._all = np.ones(num_envs, bool)

    def reset(self, frames: np.ndarray) -> np.ndarray:
        return self.push(frames, self._all)

    def push(self, frames: np.ndarray, new_game: np.ndarray) -> np.ndarray:
        # A step's frames stay on the calling thread: the ops split work across
        # threads only per megabyte (csrc/cpu/parallel.h).
        if self.rgb is not None:
            self.last_rgb = frames
            frames = preprocess_frames(frames, out_size=self.img_size,
                                       channels_first=self.rgb == "channels_first")
        self.stacks = push_frames(self.stacks, frames, torch.from_numpy(new_game))
        return self.stacks.numpy()


class _EnvpoolAtari(VectorEnv):
    """Atari through envpool's gymnasium interface (next-step autoreset, its own
    no-op/fire reset, frame skip with max-pool, episodic life and time limit)."""

    def __init__(self, env_id: str, game: str, num_envs: int, seed: int, opts: dict):
        import envpool

        task_id = _camel(game) + "-v5"  # envpool's own spelling of its ROM names
        native = opts["preprocess"] == "native"
        height, width = opts["img_size"] if native else _ATARI_RAW_SIZE
        self._env = envpool.make_gymnasium(
            task_id, num_envs=num_envs, seed=seed,
            num_threads=opts["num_threads"],
            noop_max=max(opts["noop_max"], 1),  # envpool takes 1..noop_max no-ops
            frame_skip=opts["frame_skip"],
            use_fire_reset=opts["fire_reset"],
            episodic_life=opts["episodic_life"],
            reward_clip=False,  # clipped here, so that returns stay unclipped
            repeat_action_probability=float(opts["repeat_action_probability"]),
            max_episode_steps=max(opts["max_episode_frames"] // opts["frame_skip"], 1),
            full_action_space=opts["full_action_space"],
            img_height=height, img_width=width,
            gray_scale=native,
            stack_num=opts["frame_stack"] if native else 1,
            use_inter_area_resize=True,
        )
        self._env_ids = np.arange(num_envs, dtype=np.int32)
        self._stacks = None if native else _FrameStacks(
            num_envs, opts["frame_stack"], opts["img_size"], rgb="channels_first")
        super().__init__(env_id, num_envs, (opts["frame_stack"], *opts["img_size"]),
                         torch.uint8, int(self._env.action_space.n), opts["frame_stack"],
                         reward_clip=opts["reward_clip"])

    def _reset(self) -> np.ndarray:
        obs, _ = self._env.reset()
        return obs if self._stacks is None else self._stacks.reset(obs)

    _sends_async = True

    def _step(self, actions, reset_step, new_game):
        self._send(actions)
        return self._recv(reset_step, new_game)

    def _send(self, actions):
        self._env.send(actions, self._env_ids)

    def _recv(self, reset_step, new_game):
        obs, reward, terminated, truncated, info = self._env.recv()
        order = np.argsort(info["env_id"])  # whichever env finished first comes first
        obs, reward, terminated, truncated = (x[order] for x in (obs, reward, terminated, truncated))
        if self._stacks is not None:
            # envpool refills its stack only when a game starts, not after a lost life.
            obs = self._stacks.push(obs, new_game)
        # info["reward"] is the unclipped reward too; info["terminated"] is game over.
        return obs, reward, terminated, truncated, info["terminated"][order].astype(bool)

    def _render(self) -> np.ndarray:
        return _rgb_of_env_0(self._stacks, self.env_id)

    def _close(self) -> None:
        close = getattr(self._env, "close", None)
        if close is not None:
            close()
        self._env = None


class _AleAtari(VectorEnv):
    """Atari through ale-py's ``AtariVectorEnv`` (C++ threads, next-step autoreset).

    It emits one frame per step here, (N, 1, H, W) gray or (N, 1, 210, 160, 3) RGB
    (``grayscale=False``), which ``_FrameStacks`` stacks: ALE would start a game's
    stack with black frames, envpool (and this interface) with copies of the first.
    ALE's ``episodic_life`` restarts the whole game on a life loss, so it runs with
    ``life_loss_info`` instead (terminated on a life loss, the game goes on), and this
    class spends the next step of that env on FIRE (or NOOP): the same reset step that
    envpool takes there.
    """

    def __init__(self, env_id: str, game: str, num_envs: int, seed: int, opts: dict):
        from ale_py import Action
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        native = opts["preprocess"] == "native"
        height, width = opts["img_size"] if native else _ATARI_RAW_SIZE
        self._env = AtariVectorEnv(
            game, num_envs,
            num_threads=opts["num_threads"],
            max_num_frames_per_episode=opts["max_episode_frames"],
            repeat_action_probability=float(opts["repeat_action_probability"]),
            full_action_space=opts["full_action_space"],
            autoreset_mode=AutoresetMode.NEXT_STEP,
            img_height=height, img_width=width,
            grayscale=native,
            stack_num=1,
            frameskip=opts["frame_skip"],
            maxpool=True,
            noop_max=max(opts["noop_max"], 1),  # ALE takes 1..noop_max no-ops
            episodic_life=False,
            life_loss_info=opts["episodic_life"],
            reward_clipping=False,
            use_fire_reset=opts["fire_reset"],
        )
        action_set = list(self._env.ale.get_action_set())
        fire = opts["fire_reset"] and Action.FIRE in action_set
        self._life_reset_action = action_set.index(Action.FIRE) if fire else 0
        self._episodic_life = opts["episodic_life"]
        self._seed = seed
        self._lives = np.zeros(num_envs, np.int64)
        self._life_lost = np.zeros(num_envs, bool)
        self._stacks = _FrameStacks(num_envs, opts["frame_stack"], opts["img_size"],
                                    rgb=None if native else "channels_last")
        super().__init__(env_id, num_envs, (opts["frame_stack"], *opts["img_size"]),
                         torch.uint8, int(self._env.single_action_space.n),
                         opts["frame_stack"], reward_clip=opts["reward_clip"])

    def _reset(self) -> np.ndarray:
        seeds = None
        if self._seed is not None:  # seed once; later resets go on from there
            # ALE leaves an env seeded with 0 unseeded, so the seeds start at 1.
            seeds = np.arange(self.num_envs, dtype=np.int64) + self._seed + 1
            self._seed = None
        obs, info = self._env.reset(seed=seeds)
        self._lives = info["lives"].astype(np.int64)
        self._life_lost[:] = False
        return self._stacks.reset(obs[:, 0])

    def _step(self, actions, reset_step, new_game):
        # Envs that lost a life (and only that) reset here by pressing FIRE (or NOOP);
        # ALE itself ignores the action of an env that ended its game.
        life_reset = reset_step & self._life_lost
        if life_reset.any():
            actions = np.where(life_reset, self._life_reset_action, actions).astype(np.int32)
        obs, reward, terminated, truncated, info = self._env.step(actions)
        lives = info["lives"].astype(np.int64)
        if self._episodic_life:
            # A termination with lives lost but some left is a lost life, the rule
            # ALE's and envpool's episodic_life use; any other one is the game's end.
            self._life_lost = terminated & (lives < self._lives) & (lives > 0)
        self._lives = lives
        obs = self._stacks.push(obs[:, 0], new_game)
        return obs, reward, terminated, truncated, ~self._life_lost

    def _render(self) -> np.ndarray:
        return _rgb_of_env_0(self._stacks, self.env_id)

    def _close(self) -> None:
        self._env.close()
        self._env = None


def _rgb_of_env_0(stacks: Optional[_FrameStacks], env_id: str) -> np.ndarray:
    if stacks is None or stacks.last_rgb is None:
        raise RuntimeError(f"{env_id}: render() shows the raw screen, which only the "
                           "preprocess='dqnfast' mode receives; make the env with it")
    frame = stacks.last_rgb[0]
    return np.ascontiguousarray(frame.transpose(1, 2, 0) if stacks.rgb == "channels_first" else frame)


def _atari_roms(backend: Optional[str] = None) -> Tuple[str, ...]:
    """Snake-case ROM names ("pong", "ms_pacman") that envpool or ale-py (or the one
    ``backend``) can load."""
    roms = set()
    if backend in (None, "envpool"):
        try:
            from envpool.atari.registration import atari_game_list
            roms.update(atari_game_list)
        except ImportError:
            pass
    if backend in (None, "ale"):
        try:
            from ale_py import roms as ale_roms
            roms.update(ale_roms.get_all_rom_ids())
        except ImportError:
            pass
    return tuple(sorted(roms))


def _camel(rom: str) -> str:
    return "".join(part.capitalize() for part in rom.split("_"))


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _atari_game(env_id: str, backend: Optional[str] = None) -> Optional[str]:
    """The ROM name (as ``backend`` spells it) of an id like "Pong-v5" or
    "ALE/Pong-v5", or None. Case, "_" and "-" in the game's name do not matter."""
    match = re.fullmatch(r"(?:ALE/)?([A-Za-z0-9_]+)-v5", env_id)
    if match is None:
        return None
    wanted = _squash(match.group(1))
    for rom in _atari_roms(backend):
        if _squash(rom) == wanted:
            return rom
    return None


def _unknown_env_message(env_id: str) -> str:
    games = atari_games()
    known = list(CLASSIC_ENV_IDS) + list(games)
    close = difflib.get_close_matches(env_id.removeprefix("ALE/"), known, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    if games:
        atari = (f"and the {len(games)} Atari games as '<Game>-v5' (envpool or ale-py): "
                 f"{', '.join(games)}")
    else:
        atari = "(Atari games need envpool or ale-py: pip install 'dqnfast[envs]')"
    return f"unknown env_id {env_id!r}.{hint} Supported: {', '.join(CLASSIC_ENV_IDS)} {atari}"


# -- gymnasium classic control and toy text ---------------------------------------------

class _GymVectorEnv(VectorEnv):
    """gymnasium envs in a ``SyncVectorEnv`` with next-step autoreset (the default of
    gymnasium >= 1.0, set explicitly here); observations pass through ``_observe``."""

    def __init__(self, env_id: str, gym_id: str, num_envs: int, seed: int,
                 obs_shape, obs_dtype, frame_stack: int = 1, **gym_kwargs):
        import gymnasium
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        def make_one():
            return gymnasium.make(gym_id, **gym_kwargs)

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


class _CartPole(_GymVectorEnv):
    def __init__(self, env_id, num_envs, seed, options):
        opts = _with_defaults(env_id, options, {"max_episode_steps": None, "render": False})
        super().__init__(env_id, "CartPole-v1", num_envs, seed, (4,), torch.float32,
                         **_render_mode(opts), **_time_limit(opts))

    def _observe(self, obs, new_episode):
        return obs.astype(np.float32, copy=False)


class _FrozenLake(_GymVectorEnv):
    def __init__(self, env_id, num_envs, seed, options):
        opts = _with_defaults(env_id, options, {"is_slippery": True, "map_name": "4x4",
                                                "max_episode_steps": None, "render": False})
        _check_bool("is_slippery", opts["is_slippery"])
        if opts["map_name"] not in ("4x4", "8x8"):
            raise ValueError(f"map_name must be '4x4' or '8x8', got {opts['map_name']!r}")
        num_states = 16 if opts["map_name"] == "4x4" else 64
        self._one_hot = np.eye(num_states, dtype=np.float32)
        super().__init__(env_id, "FrozenLake-v1", num_envs, seed, (num_states,),
                         torch.float32, is_slippery=opts["is_slippery"],
                         map_name=opts["map_name"], **_render_mode(opts), **_time_limit(opts))

    def _observe(self, obs, new_episode):
        return self._one_hot[obs]


class _CartPolePixels(_GymVectorEnv):
    """CartPole seen through its rendered screen, as in the pixel DQN tutorials: the
    band of rows where the cart and pole are (40% to 80% of the height) and a window
    30% of the screen wide, centred on the cart (clamped at the edges); gray,
    area-resized to ``img_size`` and stacked ``frame_stack`` deep. The window is
    nearly square (180x160 of 600x400), so a square ``img_size`` keeps the pole's
    angle, as the tutorials' resize does: a window 60% wide, squeezed 4.3x sideways
    into 84 columns, moves the pole's tip by under a pixel for tilts below 0.1 rad."""

    _ROWS = (0.4, 0.8)
    _VIEW_WIDTH = 0.3

    def __init__(self, env_id, num_envs, seed, options):
        opts = _with_defaults(env_id, options, {"frame_stack": 4, "img_size": (84, 84),
                                                "max_episode_steps": None})
        _check_int("frame_stack", opts["frame_stack"], minimum=1)
        img_size = _check_size("img_size", opts["img_size"], (160, 360))
        if not _importable("pygame"):
            raise ImportError("CartPole-pixels renders CartPole with pygame: "
                              "pip install 'gymnasium[classic-control]'")
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Headless: rgb_array rendering needs no display; this keeps SDL quiet.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        super().__init__(env_id, "CartPole-v1", num_envs, seed,
                         (opts["frame_stack"], *img_size), torch.uint8,
                         frame_stack=opts["frame_stack"], render_mode="rgb_array",
                         **_time_limit(opts))
        self._img_size = img_size
        self._x_threshold = float(self._env.envs[0].unwrapped.x_threshold)
        self._gray = torch.empty((num_envs, *img_size), dtype=torch.uint8)
        self._stacks = torch.zeros((num_envs, *self.obs_shape), dtype=torch.uint8)

    def _observe(self, obs, new_episode):
        # The returned state is the rendered one (also on reset and final steps), so
        # the cart's position x = state[0] places the window.
        frames = self._env.render()
        for i, (frame, x) in enumerate(zip(frames, obs[:, 0])):
            crop = self.cart_window(frame.shape[0], frame.shape[1], float(x))
            preprocess_frames(frame[None], crop=crop, out_size=self._img_size,
                              out=self._gray[i:i + 1])
        self._stacks = push_frames(self._stacks, self._gray,
                                   torch.from_numpy(np.asarray(new_episode, bool)))
        return self._stacks.numpy()

    def cart_window(self, height: int, width: int, x: float) -> Tuple[int, int, int, int]:
        """The crop (top, left, height, width) around a cart at position ``x``."""
        top, bottom = int(height * self._ROWS[0]), int(height * self._ROWS[1])
        view = int(width * self._VIEW_WIDTH)
        cart = int(x * width / (2 * self._x_threshold) + width / 2)
        left = min(max(cart - view // 2, 0), width - view)
        return top, left, bottom - top, view


_CLASSIC_MAKERS = {
    "CartPole-v1": _CartPole,
    "FrozenLake-v1": _FrozenLake,
    "CartPole-pixels": _CartPolePixels,
}


def _render_mode(opts: dict) -> dict:
    _check_bool("render", opts["render"])
    return {"render_mode": "rgb_array"} if opts["render"] else {}


def _time_limit(opts: dict) -> dict:
    if opts["max_episode_steps"] is None:
        return {}
    _check_int("max_episode_steps", opts["max_episode_steps"], minimum=1)
    return {"max_episode_steps": opts["max_episode_steps"]}


# -- argument checks -------------------------------------------------------------------

def _with_defaults(env_id: str, options: dict, defaults: dict) -> dict:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"make({env_id!r}) got unexpected option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(defaults))}")
    return {**defaults, **options}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def _check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__} {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a float in [0, 1], got {value}")


def _check_size(name: str, value: Any, largest: Tuple[int, int]) -> Tuple[int, int]:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value))
    if not ok:
        raise TypeError(f"{name} must be (height, width), two ints, got {value!r}")
    size = (int(value[0]), int(value[1]))
    if not (0 < size[0] <= largest[0] and 0 < size[1] <= largest[1]):
        raise ValueError(f"{name} must be (height, width) between (1, 1) and {largest} "
                         f"(frames are only shrunk), got {size}")
    return size


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None
