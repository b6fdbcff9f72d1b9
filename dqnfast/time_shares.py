"""Where a training run's wall-clock time goes, as shares of each logging interval.

Phases: ``env_step`` (stepping the environments, or waiting for their step started
before the updates), ``acting`` (choosing actions: the forward and reading the
actions back), ``adding`` (observations to the device and transitions into the
replay buffer), ``updating`` and ``logging`` (logs, the best model, checkpoints,
target syncs, episode books). All are host wall-clock time except ``updating`` on a
GPU, which is the GPU's own time running the updates (CUDA events): there the
updates overlap the other phases, so the shares can add up to more than 1.
"""
import time
from typing import Dict, List, Tuple

import torch

PHASES = ("env_step", "acting", "adding", "updating", "logging")


class _HostTimer:
    """Adds the host time spent inside each ``with`` block to ``seconds`` (one block at
    a time: a plain object rather than a generator, a step enters several)."""
    __slots__ = ("seconds", "start")

    def __init__(self):
        self.seconds, self.start = 0.0, None  # start: of the open block, else None

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self.start
        self.start = None


class _GpuTimer:
    """Records a CUDA event pair around each ``with`` block, read once the GPU is done."""

    def __init__(self):
        self.pending: List[Tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def __enter__(self):
        self.pending.append((torch.cuda.Event(enable_timing=True),
                             torch.cuda.Event(enable_timing=True)))
        self.pending[-1][0].record()

    def __exit__(self, *exc):
        self.pending[-1][1].record()

    def done_seconds(self) -> float:
        """The GPU time of the finished blocks, which it forgets (the rest stay)."""
        seconds = 0.0
        while self.pending and self.pending[0][1].query():
            start, end = self.pending.pop(0)
            seconds += start.elapsed_time(end) / 1e3
        return seconds


class TimeShares:
    def __init__(self, device: torch.device):
        self._timers = {phase: _HostTimer() for phase in PHASES}
        self._gpu_updates = _GpuTimer() if device.type == "cuda" else None
        self._last_take = time.perf_counter()

    def measure(self, phase: str) -> _HostTimer:
        """A context that adds the host time spent inside it to ``phase``."""
        return self._timers[phase]

    def updating(self):
        """A context that times a block of updates: its GPU time on a GPU, else its
        host time."""
        return self._timers["updating"] if self._gpu_updates is None else self._gpu_updates

    def take(self) -> Dict[str, float]:
        """Each phase's share of the wall-clock time since the last call. A block open
        now counts up to now here, the rest of it in the next interval; GPU update
        blocks still running count in a later interval."""
        now = time.perf_counter()
        interval, self._last_take = now - self._last_take, now
        if self._gpu_updates is not None:
            self._timers["updating"].seconds += self._gpu_updates.done_seconds()
        shares = {}
        for phase, timer in self._timers.items():
            if timer.start is not None:
                timer.seconds, timer.start = timer.seconds + now - timer.start, now
            shares[phase], timer.seconds = timer.seconds / interval, 0.0
        return shares
