"""The replay buffer's storage, described once on the Python side.

Its C++ twins: ``csrc/replay_storage.h`` (the same fields as raw pointers, the view
the CPU code and the CUDA kernels share) and ``csrc/replay_layout.h`` (the index
arithmetic). The op wrappers in ``dqnfast.ops`` pass a ``ReplayStorage``'s tensors
by these names; ``ReplayBuffer`` owns one.
"""
import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch

# The per-environment counters, in the order of csrc/replay_layout.h's enum Counter.
TRANSITIONS_WRITTEN, FRAMES_WRITTEN, FIRST_VALID, STREAM_OPEN, STREAM_START = range(5)
NUM_COUNTERS = 5


class ReplayStorage:
    """The tensors of a replay buffer of ``num_envs`` environments (E), each with
    ``capacity`` transition slots (C) and ``frame_capacity`` frames (F):

    - ``frames`` (E, F, *frame_shape), the observations' dtype: each env's frame ring;
    - ``obs_pos``, ``action`` (E, C) int64; ``reward`` (E, C) float32;
      ``terminated``, ``truncated`` (E, C) bool: each env's transition ring;
    - ``counters`` (E, NUM_COUNTERS) int64 (``TRANSITIONS_WRITTEN`` ...);
    - with prioritized replay (else None): ``priority`` (E, C) float32, ``sum_tree``
      (2P,) float64, ``min_tree`` (2P,) float32 (+inf at first) and ``max_priority``
      (1,) float32 (1 at first), P the leaves (E * C padded to a power of two; see
      csrc/priority_tree.h);
    - ``rejected_adds`` (2,) int64: adds the GPU refused, and the bits of why (see
      ``dqnfast.ops.REJECTED_REASONS``); not part of the saved state.
    """

    RING_NAMES = ("frames", "obs_pos", "action", "reward", "terminated", "truncated", "counters")
    PRIORITY_NAMES = ("priority", "sum_tree", "min_tree", "max_priority")

    def __init__(self, num_envs: int, capacity: int, frame_capacity: int,
                 frame_shape: Sequence[int], obs_dtype: torch.dtype, prioritized: bool,
                 device: torch.device):
        on = dict(device=device)
        rings = (num_envs, capacity)
        self.frames = torch.zeros((num_envs, frame_capacity, *frame_shape), dtype=obs_dtype, **on)
        self.obs_pos = torch.zeros(rings, dtype=torch.int64, **on)
        self.action = torch.zeros(rings, dtype=torch.int64, **on)
        self.reward = torch.zeros(rings, dtype=torch.float32, **on)
        self.terminated = torch.zeros(rings, dtype=torch.bool, **on)
        self.truncated = torch.zeros(rings, dtype=torch.bool, **on)
        self.counters = torch.zeros((num_envs, NUM_COUNTERS), dtype=torch.int64, **on)
        self.priority: Optional[torch.Tensor] = None
        self.sum_tree: Optional[torch.Tensor] = None
        self.min_tree: Optional[torch.Tensor] = None
        self.max_priority: Optional[torch.Tensor] = None
        if prioritized:
            nodes = 2 << (num_envs * capacity - 1).bit_length()
            self.priority = torch.zeros(rings, dtype=torch.float32, **on)
            self.sum_tree = torch.zeros(nodes, dtype=torch.float64, **on)
            self.min_tree = torch.full((nodes,), math.inf, dtype=torch.float32, **on)
            self.max_priority = torch.ones(1, dtype=torch.float32, **on)
        self.rejected_adds = torch.zeros(2, dtype=torch.int64, **on)

    @property
    def prioritized(self) -> bool:
        return self.sum_tree is not None

    def tensors(self) -> Dict[str, torch.Tensor]:
        """The stored tensors by name (the storage's own, not copies): what a buffer's
        state_dict saves."""
        names = self.RING_NAMES + (self.PRIORITY_NAMES if self.prioritized else ())
        return {name: getattr(self, name) for name in names}

    def check_loadable(self, tensors: dict) -> None:
        """Raises ValueError unless ``tensors`` has exactly this storage's names, each a
        tensor of its shape and dtype."""
        mine = self.tensors()
        if not isinstance(tensors, dict) or set(tensors) != set(mine):
            raise ValueError(f"state_dict storage must hold {sorted(mine)}")
        for name, tensor in mine.items():
            theirs = tensors[name]
            if (not isinstance(theirs, torch.Tensor) or theirs.shape != tensor.shape
                    or theirs.dtype != tensor.dtype):
                got = (f"{theirs.dtype} {tuple(theirs.shape)}" if isinstance(theirs, torch.Tensor)
                       else type(theirs).__name__)
                raise ValueError(f"state_dict storage {name!r}: expected {tensor.dtype} "
                                 f"{tuple(tensor.shape)}, got {got}")

    def copy_from(self, tensors: dict) -> None:
        """Copies ``tensors`` (checked by ``check_loadable``) in; a tensor that is this
        storage's own is left as it is."""
        for name, tensor in self.tensors().items():
            if tensors[name].data_ptr() != tensor.data_ptr():
                tensor.copy_(tensors[name])

    @property
    def nbytes(self) -> int:
        """Bytes held by the saved tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


def sampleable_total(counters: np.ndarray, n_step: int) -> int:
    """The number of sampleable transitions of all environments, from their counters
    (E, NUM_COUNTERS) on the host: csrc/replay_layout.h's ``sampleable_total``."""
    # A plain loop over a few envs costs less than numpy's per-call overhead.
    total, window = 0, n_step - 1
    for written, _, first_valid, stream_open, stream_start in counters.tolist():
        pending = min(window, written - stream_start) if stream_open else 0
        total += max(0, written - pending - first_valid)
    return total
