"""Where a training run's wall-clock time goes, as shares of each logging interval.

Phases: ``env_step`` (stepping the environments, or waiting for their step started
before the updates), ``acting`` (choosing actions: the forward and reading the
actions back), ``adding`` (observations to the device and transitions into the
replay buffer), ``updating`` and ``logging`` (logs, the best model, checkpoints,
target syncs, episode books). All are host wall-clock time except ``updating`` on a
GPU, which is the GPU's own time running the updates (CUDA events): there the
updates overlap the other phases, so the shares can add up to more than 1.
"""
import contextlib
import time
from typing import Dict, List, Tuple

import torch

PHASES = ("env_step", "acting", "adding", "updating", "logging")


class TimeShares:
    def __init__(self, device: torch.device):
        self.on_gpu = device.type == "cuda"
        self._seconds = dict.fromkeys(PHASES, 0.0)
        self._update_events: List[Tuple[torch.cuda.Event, torch.cuda.Event]] = []

    @contextlib.contextmanager
    def measure(self, phase: str):
        """Adds the host time spent inside the block to ``phase``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[phase] += time.perf_counter() - start

    @contextlib.contextmanager
    def updating(self):
        """Times a block of updates: its GPU time on a GPU, else its host time."""
        if not self.on_gpu:
            with self.measure("updating"):
                yield
            return
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        yield
        end.record()
        self._update_events.append((start, end))

    def take(self, interval_seconds: float) -> Dict[str, float]:
        """Each phase's share of the ``interval_seconds`` since the last call (GPU update
        blocks still running are counted in a later interval)."""
        while self._update_events and self._update_events[0][1].query():
            start, end = self._update_events.pop(0)
            self._seconds["updating"] += start.elapsed_time(end) / 1e3
        shares = {phase: seconds / interval_seconds for phase, seconds in self._seconds.items()}
        self._seconds = dict.fromkeys(PHASES, 0.0)
        return shares
