"""Acting: the exploration schedule, epsilon-greedy actions for all environments at
once, and the weights that act. Shared by the training loop, ``dqnfast.evaluate``
and the distributed actors.

Which weights act. On the CPU the Q-network itself acts, so each action uses every
update made before it (a seeded run is reproducible). On a GPU an acting copy of the
Q-network acts on a CUDA stream of its own: choosing actions never waits behind the
updates queued on the learner's stream. Every ``refresh_updates`` updates the
learner's stream snapshots the Q-network in order with its updates (the snapshot
after update ``n`` holds exactly the weights after ``n`` updates); the first
``act`` after the GPU has finished that snapshot (an event, queried without
waiting) copies it into the acting weights, and only then may the next snapshot be
queued. So on a GPU the acting weights are those of an update at most
``refresh_updates`` plus the updates still queued behind the newest one (more while
the GPU is that far behind: no snapshot is queued while one waits to be taken).
"""
import contextlib
import copy
import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from dqnfast.config import Config
from dqnfast.precision import autocast_of


def epsilon_at(cfg: Config, step: int) -> float:
    """The exploration rate after ``step`` env steps (``cfg.epsilon_schedule``)."""
    if cfg.epsilon_schedule == "linear":
        fraction = min(step / max(cfg.epsilon_decay_steps, 1), 1.0)
        return cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)
    if cfg.epsilon_schedule == "exponential":  # the CartPole tutorial's decay
        return cfg.epsilon_end + (cfg.epsilon_start - cfg.epsilon_end) * math.exp(
            -step / max(cfg.epsilon_decay_steps, 1))
    raise ValueError(f"epsilon_schedule must be 'linear' or 'exponential', got {cfg.epsilon_schedule!r}")


def select_actions(q_network: nn.Module, obs, epsilon: float, num_actions: int,
                   device: torch.device, rng: np.random.Generator,
                   precision: str = "float32") -> np.ndarray:
    """Epsilon-greedy for all environments with one batched forward (none if all
    explore). ``obs``: a numpy array, or a tensor already on ``device``."""
    explore = rng.random(len(obs)) < epsilon
    actions = rng.integers(0, num_actions, len(obs))
    if not explore.all():
        with torch.no_grad(), autocast_of(precision, q_network):
            greedy = q_network(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
        actions = np.where(explore, actions, greedy)
    return actions


class ActingNetwork:
    """The network that chooses the actions of a training run (see the module's
    docstring for which weights those are on the CPU and on a GPU). With
    ``own_copy=False`` the learner's network itself is the acting one on a GPU too (a
    learner whose actors act elsewhere)."""

    def __init__(self, q_network: nn.Module, refresh_updates: int, own_copy: bool = True):
        self.q_network = q_network
        self.device = next(q_network.parameters()).device
        self.refresh_updates = refresh_updates
        if self.device.type != "cuda" or not own_copy:
            self.network, self.stream = q_network, None
            return
        self.stream = torch.cuda.Stream(self.device)
        self.network = copy.deepcopy(q_network).requires_grad_(False)
        self._snapshot = [p.detach().clone() for p in q_network.parameters()]
        self._snapshot_done: Optional[torch.cuda.Event] = None  # a snapshot not yet taken
        self._taken: Optional[torch.cuda.Event] = None  # the acting stream's last read of it

    @property
    def on_gpu(self) -> bool:
        return self.stream is not None

    def context(self):
        """The stream acting and its uploads run on (nothing to enter on the CPU)."""
        return torch.cuda.stream(self.stream) if self.on_gpu else contextlib.nullcontext()

    def after_update(self, updates: int) -> None:
        """Called after each update, on the learner's stream: every ``refresh_updates``
        updates, queues a snapshot of the Q-network there, unless the last one is still
        to be taken."""
        if not self.on_gpu or updates % self.refresh_updates != 0 or self._snapshot_done is not None:
            return
        if self._taken is not None:  # the acting stream's copy of the last one comes first
            torch.cuda.current_stream(self.device).wait_event(self._taken)
        torch._foreach_copy_(self._snapshot, [p.detach() for p in self.q_network.parameters()])
        self._snapshot_done = torch.cuda.Event()
        self._snapshot_done.record()

    def act(self, obs, epsilon: float, num_actions: int, rng: np.random.Generator,
            precision: str = "float32") -> np.ndarray:
        """Epsilon-greedy actions; on a GPU, on the acting stream, first taking a
        finished snapshot of the learner's weights where there is one."""
        if not self.on_gpu:
            return select_actions(self.network, obs, epsilon, num_actions, self.device, rng,
                                  precision)
        with self.context():
            if self._snapshot_done is not None and self._snapshot_done.query():
                # Done on the GPU: this copy waits for nothing.
                self.stream.wait_event(self._snapshot_done)
                torch._foreach_copy_([p.detach() for p in self.network.parameters()],
                                     self._snapshot)
                self._taken = torch.cuda.Event()
                self._taken.record()
                self._snapshot_done = None
            return select_actions(self.network, obs, epsilon, num_actions, self.device, rng,
                                  precision)
