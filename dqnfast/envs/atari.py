"""What the two Atari backends (``envpool_atari``, ``ale_atari``) share: the options
and their checks, dqnfast's frame stacks, and the games' ROM names.

Atari options (DeepMind's defaults): ``noop_max=30`` (a random 1..30 no-ops after
each game reset, the last one FIRE with ``fire_reset``; 0 acts as 1),
``frame_skip=4`` (repeat each action 4 frames, max-pool the last two),
``fire_reset=True`` (press FIRE at reset in games that have it),
``episodic_life=True``, ``reward_clip=True`` (rewards -1/0/+1; returns stay
unclipped), ``repeat_action_probability=0.0`` (sticky actions off),
``max_episode_frames=108_000`` (30 minutes of play; truncated after
``max_episode_frames // frame_skip`` steps), ``frame_stack=4``, ``img_size=(84, 84)``,
``full_action_space=False``, ``num_threads=0`` (one per usable core, at most one per
env: ``env_threads``),
``backend=None`` ("envpool" if installed, else "ale") and ``preprocess=None``:
"native" (the backend emits gray ``img_size`` frames) or "dqnfast" (the backend
emits max-pooled RGB frames, 210x160, and dqnfast's ``preprocess_frames`` and
``push_frames`` make the gray stacks).

Which Atari mode is the default: "native", for both backends, because it is the
faster: env steps per second of each mode, everything the interface does included,
are in ``benchmarks/bench_envs.py`` (figures in ``benchmarks/RESULTS.md``).

The dqnfast mode moves 100,800 bytes of RGB per env step out of the emulator (12x
one 84x84 gray frame) and converts them on the stepping thread, where envpool and
ALE convert inside their worker threads, in parallel with emulation; envpool also
transposes its RGB frames to channels-first pixel by pixel, which is why its
dqnfast mode is the slowest. (ALE's native mode here takes one gray frame per step
from ALE and stacks it with ``push_frames``; see ``ale_atari``.)

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
import os
import re
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from dqnfast.envs.base import VectorEnv
from dqnfast.envs.options import (check_bool, check_int, check_probability, check_size,
                                  with_defaults)
from dqnfast.extras import importable
from dqnfast.preprocess import preprocess_frames, push_frames

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
ATARI_RAW_SIZE = (210, 160)  # the ALE screen, (height, width)


def env_threads(num_threads: int, num_envs: int) -> int:
    """The emulator threads to run: ``num_threads``, or for 0 one per core this process
    may use, at most one per env (more threads than cores only contend for them)."""
    if num_threads > 0:
        return num_threads
    return max(1, min(num_envs, len(os.sched_getaffinity(0))))


def atari_options(env_id: str, options: dict) -> dict:
    """``options`` checked and completed with the defaults, ``backend`` and
    ``preprocess`` resolved to the one that will run."""
    opts = with_defaults(env_id, options, _ATARI_DEFAULTS)
    backend = opts["backend"]
    if backend is None:
        backend = "envpool" if importable("envpool") else "ale"
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
        check_int(name, opts[name], minimum=0)
    for name in ("frame_skip", "max_episode_frames", "frame_stack"):
        check_int(name, opts[name], minimum=1)
    check_int("num_threads", opts["num_threads"], minimum=0)
    for name in ("fire_reset", "episodic_life", "reward_clip", "full_action_space"):
        check_bool(name, opts[name])
    check_probability("repeat_action_probability", opts["repeat_action_probability"])
    opts["img_size"] = check_size("img_size", opts["img_size"], ATARI_RAW_SIZE)
    opts["preprocess"] = preprocess
    if not importable({"envpool": "envpool", "ale": "ale_py"}[backend]):
        raise ImportError(f"backend={backend!r} needs the {backend} package: "
                          f"pip install 'dqnfast[envs]'")
    return opts


class FrameStacks:
    """Frame stacks kept by dqnfast: one new frame per env and step in, a fresh
    (num_envs, k, H, W) uint8 stack out, k copies of the frame where a game starts.
    Each step writes new stacks from the previous ones (``push_frames`` is out of
    place), so arrays already handed out never change, without copying them first.
    ``rgb`` ("channels_first" or "channels_last") turns max-pooled RGB frames into
    gray ``img_size`` ones first (the "dqnfast" mode); ``rgb=None`` takes gray frames
    as they are."""

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


class BackendAtari(VectorEnv):
    """What the Atari envs over ALE and envpool share: the backend's own vector env in
    ``_env``, dqnfast's frame stacks (or None: the backend stacks) in ``_stacks``."""

    _env = None
    _stacks: Optional[FrameStacks] = None

    @property
    def backend_env(self):
        """The backend's own vector env, which this env drives (to measure it alone)."""
        return self._env

    def _render(self) -> np.ndarray:
        stacks = self._stacks
        if stacks is None or stacks.last_rgb is None:
            raise RuntimeError(f"{self.env_id}: render() shows the raw screen, which only the "
                               "preprocess='dqnfast' mode receives; make the env with it")
        frame = stacks.last_rgb[0]
        return np.ascontiguousarray(frame.transpose(1, 2, 0) if stacks.rgb == "channels_first"
                                    else frame)

    def _close(self) -> None:
        close = getattr(self._env, "close", None)
        if close is not None:
            close()
        self._env = None


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


def camel(rom: str) -> str:
    return "".join(part.capitalize() for part in rom.split("_"))


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def atari_game(env_id: str, backend: Optional[str] = None) -> Optional[str]:
    """The Atari game ``make`` plays for ``env_id``, by its ROM name as ``backend`` (by
    default any installed one) spells it: "pong" for "Pong-v5" and "ALE/Pong-v5",
    "ms_pacman" for "MsPacman-v5"; None where ``env_id`` names no game of the backends.
    Case, "_" and "-" in the game's name do not matter."""
    match = re.fullmatch(r"(?:ALE/)?([A-Za-z0-9_]+)-v5", env_id)
    if match is None:
        return None
    wanted = _squash(match.group(1))
    for rom in _atari_roms(backend):
        if _squash(rom) == wanted:
            return rom
    return None


def atari_games() -> Tuple[str, ...]:
    """The Atari games the installed backends know, as ``make`` ids ("Pong-v5", ...)."""
    return tuple(sorted(camel(rom) + "-v5" for rom in _atari_roms()))
