"""Checkpoints: the best model for playing, and full training state for resuming.

A run folder holds ``config.json``, ``best_model.pt`` (the Q-network whose
100-episode mean return was the best so far) and ``checkpoint/`` (networks,
optimizer, counters, RNG states in ``state.pt``, and the replay buffer in
``buffer-<step>.pt``, named in ``state.pt``). Files are written under a temporary
name and renamed, and the previous buffer is deleted only once the new
``state.pt`` names its successor, so a run killed while saving keeps a whole
checkpoint.
"""
import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from dqnfast.config import Config
from dqnfast.models import make_q_network

BEST_MODEL = "best_model.pt"
CHECKPOINT_DIR = "checkpoint"


def _save_atomically(obj, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    temporary.replace(path)


def model_info(config: Config, env) -> dict:
    """What it takes, beside its weights, to rebuild a run's Q-network (``load_model``)."""
    return {"config": dataclasses.asdict(config), "obs_shape": list(env.obs_shape),
            "obs_dtype": str(env.obs_dtype), "num_actions": env.num_actions}


def save_model(path: Path, q_network, info: dict, **stats) -> None:
    """The Q-network with its ``model_info`` and any ``stats`` (step, mean return)."""
    _save_atomically({"q_network": q_network.state_dict(), **info, **stats}, Path(path))


def load_model(path, device="cpu"):
    """(q_network, config) from ``best_model.pt``, a run folder, or a full checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_MODEL if (path / BEST_MODEL).exists() else path / CHECKPOINT_DIR / "state.pt"
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: expected a run folder, {BEST_MODEL} or a "
                                f"{CHECKPOINT_DIR}/state.pt")
    saved = torch.load(path, map_location=device, weights_only=False)
    config = Config(**{**saved["config"], "hidden": tuple(saved["config"]["hidden"])})
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
    buffer_file = f"buffer-{step}.pt"
    temporary = folder / (buffer_file + ".tmp")
    replay_buffer.save(temporary)
    temporary.replace(folder / buffer_file)
    _save_atomically({**training_state, "rng": rng_states(), "buffer_file": buffer_file},
                     folder / "state.pt")
    for old in folder.glob("buffer-*.pt"):
        if old.name != buffer_file:
            old.unlink()


def load_checkpoint(run_dir: Path, replay_buffer, map_location="cpu") -> dict:
    """Loads the buffer in place and returns the training state (RNGs restored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not (folder / "state.pt").exists():
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from ({folder}/state.pt)")
    state = torch.load(folder / "state.pt", map_location=map_location, weights_only=False)
    replay_buffer.load(folder / state.pop("buffer_file"))
    set_rng_states(state.pop("rng"))
    return state
