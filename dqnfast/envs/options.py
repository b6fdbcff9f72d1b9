"""Checks of the options ``make`` passes to each environment: one copy for all of them."""
from typing import Any, Tuple

import numpy as np


def with_defaults(env_id: str, options: dict, defaults: dict) -> dict:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"make({env_id!r}) got unexpected option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(defaults))}")
    return {**defaults, **options}


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__} {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a float in [0, 1], got {value}")


def check_size(name: str, value: Any, largest: Tuple[int, int]) -> Tuple[int, int]:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value))
    if not ok:
        raise TypeError(f"{name} must be (height, width), two ints, got {value!r}")
    size = (int(value[0]), int(value[1]))
    if not (0 < size[0] <= largest[0] and 0 < size[1] <= largest[1]):
        raise ValueError(f"{name} must be (height, width) between (1, 1) and {largest} "
                         f"(frames are only shrunk), got {size}")
    return size
