"""Checkpoints: the best model for playing, and full training state for resuming.

A run folder holds ``config.json``, ``best_model.pt`` (the Q-network whose
100-episode mean return was the best so far) and ``checkpoint/`` (networks,
optimizer, counters, RNG states in ``state.pt``, and the replay buffer in
``buffer-<step>.pt``, named in ``state.pt``). Files are written under a temporary
name and renamed, and the previous buffer is deleted only once the new
``state.pt`` names its successor, so a run killed while saving keeps a whole
checkpoint; what such a kill leaves under a temporary name is removed by the next
save and on resuming. A file that is damaged all the same (cut short by a full disk,
say) is named in the error, with what the run holds in its place.
"""
import dataclasses
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from dqnfast.config import Config
from dqnfast.models import make_q_network

BEST_MODEL = "best_model.pt"
CHECKPOINT_DIR = "checkpoint"
STATE = "state.pt"  # in CHECKPOINT_DIR
TEMPORARY = ".tmp"  # the suffix of a file being written


def _save_atomically(obj, path: Path) -> None:
    temporary = path.with_name(path.name + TEMPORARY)
    torch.save(obj, temporary)
    temporary.replace(path)


def _remove_temporaries(folder: Path) -> None:
    """Removes what a save killed midway left: files still under a temporary name."""
    for temporary in folder.glob("*" + TEMPORARY):
        temporary.unlink()


def _read(path: Path, **load_options):
    """``torch.load`` of a run's file; a damaged one is a ValueError that names it and
    what the run holds in its place."""
    try:
        return torch.load(path, **load_options)
    except PermissionError:  # readable, so not damaged
        raise
    # What torch.load raises, depending on where a file is cut short or overwritten.
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path} is damaged: torch cannot read it (cut short or overwritten); "
                         f"{_in_place_of(path)}") from error


def _in_place_of(path: Path) -> str:
    """What can be used in place of ``path``, a damaged model or checkpoint file."""
    if path.parent.name == CHECKPOINT_DIR:  # the state or a buffer
        best = path.parent.parent / BEST_MODEL
        return ("a run keeps no earlier checkpoint to resume from" + (
            f"; its best model can still be evaluated: python -m dqnfast.evaluate {best}"
            if best.exists() else ""))
    state = path.parent / CHECKPOINT_DIR / STATE
    if state.exists():
        return f"the run's last checkpoint can be evaluated instead: python -m dqnfast.evaluate {state}"
    return f"there is no checkpoint beside it ({state}) to evaluate instead"


def model_info(config: Config, env) -> dict:
    """What it takes, beside its weights, to rebuild a run's Q-network (``load_model``)."""
    return {"config": dataclasses.asdict(config), "obs_shape": list(env.obs_shape),
            "obs_dtype": str(env.obs_dtype), "num_actions": env.num_actions}


def save_model(path: Path, weights: dict, info: dict, **stats) -> None:
    """A Q-network's ``weights`` (its state dict) with its ``model_info`` and any ``stats``
    (step, mean return)."""
    _save_atomically({"q_network": weights, **info, **stats}, Path(path))


def load_model(path, device="cpu"):
    """(q_network, config) from ``best_model.pt``, a run folder, or a full checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_MODEL if (path / BEST_MODEL).exists() else path / CHECKPOINT_DIR / STATE
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: expected a run folder, {BEST_MODEL} or a "
                                f"{CHECKPOINT_DIR}/{STATE}")
    saved = _read(path, map_location="cpu", weights_only=False)  # to the device at the end
    if not (isinstance(saved, dict) and {"q_network", "config"} <= set(saved)):
        raise ValueError(f"{path} holds no dqnfast model: expected a {BEST_MODEL} or a "
                         f"{CHECKPOINT_DIR}/{STATE}")
    config = Config.from_dict(saved["config"])
    q_network = make_q_network(saved["obs_shape"], getattr(torch, saved["obs_dtype"].removeprefix("torch.")),
                               saved["num_actions"], dueling=config.dueling, hidden=config.hidden)
    q_network.load_state_dict(saved["q_network"])
    return q_network.to(device).eval(), config


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(run_dir: Path, training_state: dict, replay_buffer, step: int) -> None:
    """``training_state``: networks, optimizer and counters (anything torch.save takes)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(folder)
    buffer_file = f"buffer-{step}.pt"
    temporary = folder / (buffer_file + TEMPORARY)
    replay_buffer.save(temporary)
    temporary.replace(folder / buffer_file)
    _save_atomically({**training_state, "rng": rng_states(), "buffer_file": buffer_file},
                     folder / STATE)
    for old in folder.glob("buffer-*.pt"):
        if old.name != buffer_file:
            old.unlink()


def load_checkpoint(run_dir: Path, replay_buffer, map_location="cpu") -> dict:
    """Loads the buffer in place and returns the training state (RNGs restored).
    Changes no file unless the whole checkpoint loads."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not (folder / STATE).exists():
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from ({folder / STATE})")
    state = _read(folder / STATE, map_location=map_location, weights_only=False)
    # Read here rather than by replay_buffer.load, so that a damaged file is told apart
    # from a buffer of other settings (load_state_dict's errors).
    replay_buffer.load_state_dict(_read(folder / state.pop("buffer_file"), mmap=True,
                                        weights_only=True))
    set_rng_states(state.pop("rng"))
    _remove_temporaries(folder)
    return state
