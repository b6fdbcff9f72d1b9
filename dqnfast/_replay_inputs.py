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
