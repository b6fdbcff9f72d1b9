"""Argument checks and conversions of the replay buffer: a clear TypeError or
ValueError naming what was expected and what came."""
import math
import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence, float, int, bool]


def require_int(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def require_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def require_priority_eps(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"priority_eps must be a float, got {type(value).__name__}")
    # At least float32's smallest normal number: every priority stays positive.
    tiny = torch.finfo(torch.float32).tiny
    if not tiny <= value < math.inf:
        raise ValueError(f"priority_eps must be positive and finite (at least {tiny:.3g}), "
                         f"got {value}")
    return float(value)


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """The tensor sharing ``array``'s memory, also for a read-only array (Ray's object
    store delivers them): the buffer's ops only read their inputs."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def as_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    """``value`` as a tensor where it already is (no copy for tensors and arrays)."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return from_numpy(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"expected {name} as a numpy array or torch tensor, got "
                        f"{type(value).__name__}: {error}") from None


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Compared first: a no-op .to() still costs about a microsecond, and a one-env add
    # calls this six times.
    if tensor.device == device:
        return tensor
    # Without blocking only towards a GPU: a copy to the host would return before it
    # lands, and the host reads (checks, memcpy) the tensor right away.
    return tensor.to(device, non_blocking=device.type == "cuda")


NP_INT64, NP_FLOAT32, NP_BOOL = np.dtype(np.int64), np.dtype(np.float32), np.dtype(np.bool_)


def numpy_dtype(dtype: torch.dtype) -> Optional[np.dtype]:
    """The numpy dtype of a torch dtype, None where numpy has none (bfloat16)."""
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        return None


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def _is_floating(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point


def _is_real(dtype: torch.dtype) -> bool:
    return not dtype.is_complex and dtype != torch.bool


def _cast(tensor: torch.Tensor, name: str, dtype: torch.dtype, accepts, what: str) -> torch.Tensor:
    if not accepts(tensor.dtype):
        raise TypeError(f"expected {name} of {what}, got {tensor.dtype}")
    return tensor.to(dtype)


def as_int64(tensor: torch.Tensor, name: str) -> torch.Tensor:
    return _cast(tensor, name, torch.int64, _is_integer, "an integer dtype")


def as_float32(tensor: torch.Tensor, name: str) -> torch.Tensor:
    return _cast(tensor, name, torch.float32, _is_real, "a real dtype")


def as_floats(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """float32 from any floating dtype (priorities)."""
    return _cast(tensor, name, torch.float32, _is_floating, "a floating dtype")


def as_flags(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Bool flags; numeric arrays (SB3 passes float dones) must hold only 0 and 1."""
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.dtype.is_complex or not ((tensor == 0) | (tensor == 1)).all():
        raise ValueError(f"expected {name} as bools (or 0/1), got {tensor.dtype} values "
                         f"{tensor.flatten()[:8].tolist()}")
    return tensor.to(torch.bool)


def checked_device(device, name: str) -> torch.device:
    """``device`` as a torch.device, a CUDA one with its index: "cuda" and "cuda:0" name
    the same GPU and must compare equal (the buffer copies between unequal devices)."""
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be a CPU or CUDA device, got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{name}={str(device)!r} asks for CUDA, but no GPU is visible to torch "
                           f"{torch.__version__}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def check_host_rows(obs: torch.Tensor, next_obs: torch.Tensor, action: torch.Tensor,
                     reward: torch.Tensor, frame_stack: int, num_actions: Optional[int]) -> None:
    """The compiled add's checks, done on whichever inputs are on the host before they
    go to GPU storage (the GPU checks CUDA inputs itself), with the op's messages:
    each row's next_obs[:-1] equals its obs[1:] byte for byte, actions lie in [0,
    num_actions), rewards and float observations are finite. Inputs of the wrong
    shape or dtype are left to the op to report."""
    if not (obs.is_cuda or next_obs.is_cuda):
        check_continues(obs, next_obs, frame_stack)
    for name, values in (("obs", obs), ("next_obs", next_obs)):
        if not values.is_cuda and values.dtype.is_floating_point and values.dim() >= 1:
            finite = torch.isfinite(values.reshape(len(values), -1))
            if not finite.all():
                row = int((~finite).any(dim=1).nonzero()[0])
                value = values.reshape(len(values), -1)[row][~finite[row]][0].item()
                raise ValueError(f"{name} must be finite, got {value} in row {row}")
    if not action.is_cuda:
        actions = action.flatten()
        bad = actions < 0
        if num_actions is not None:
            bad |= actions >= num_actions
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(f"actions must lie in [0, {num_actions or 'inf'}), got "
                             f"{int(actions[row])} at row {row}")
    if not reward.is_cuda:
        rewards = reward.flatten()
        bad = ~torch.isfinite(rewards)
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(f"rewards must be finite, got {rewards[row].item()} at row {row}")


def check_continues(obs: torch.Tensor, next_obs: torch.Tensor, frame_stack: int) -> None:
    """Raises ValueError unless every row's next_obs[:-1] equals its obs[1:] byte for
    byte (the compiled ops' check, done on host inputs before they go to the GPU).
    Inputs of the wrong shape or dtype are left to the op to report."""
    if (frame_stack == 1 or obs.shape != next_obs.shape or obs.dtype != next_obs.dtype
            or obs.dim() < 2 or obs.shape[0] == 0 or obs.shape[1] != frame_stack):
        return
    rows = obs.shape[0]
    obs_bytes, next_bytes = (t.reshape(rows, frame_stack, -1).contiguous().view(torch.uint8)
                             for t in (obs, next_obs))
    differs = (next_bytes[:, :-1] != obs_bytes[:, 1:]).reshape(rows, -1).any(dim=1)
    if differs.any():
        raise ValueError(f"next_obs of row {int(differs.nonzero()[0])} does not continue its "
                         f"obs: with frame_stack={frame_stack}, next_obs[:-1] must equal obs[1:]")

