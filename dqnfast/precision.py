"""Numeric precision of the networks: ``"float32"``, or ``"bfloat16"``, which runs the
convolutions and matrix products under autocast in bfloat16 (the Nature CNN's fully
connected head, weights, gradients, optimizer state, targets and loss stay float32).
It pays only on CPUs with bfloat16 instructions; without them torch emulates it, many
times slower than float32 (the update benchmark, ``benchmarks/RESULTS.md``), and a run
says so at start.
"""
import platform
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn

PRECISIONS = ("float32", "bfloat16")
# The /proc/cpuinfo flags of CPUs that compute in bfloat16 natively (without them torch
# emulates it, slower than float32), by the machine's architecture.
_BFLOAT16_FLAGS = {"x86_64": {"avx512_bf16", "amx_bf16"}, "aarch64": {"bf16"}}


def cpu_has_bfloat16() -> Optional[bool]:
    """Whether this CPU has bfloat16 instructions, from /proc/cpuinfo on x86-64 and
    aarch64 Linux; None (unknown) elsewhere."""
    wanted = _BFLOAT16_FLAGS.get(platform.machine())
    if wanted is None or not sys.platform.startswith("linux"):
        return None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86's name, aarch64's; a line per core
            flags.update(value.split())
    return bool(wanted & flags) if flags else None


def autocast_of(precision: str, network: nn.Module) -> torch.autocast:
    """The autocast context for ``precision`` on the device of ``network`` (disabled
    for float32). Not cached: its casts must not outlive a CUDA graph's capture."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = next(network.parameters()).device.type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16",
                          cache_enabled=False)


def warn_if_slow_precision(precision: str, device: torch.device) -> None:
    """One line on stderr where bfloat16 runs on a CPU that emulates it."""
    if precision == "bfloat16" and device.type == "cpu" and cpu_has_bfloat16() is False:
        print("warning: --precision bfloat16 on a CPU without bfloat16 instructions (AVX-512 "
              "BF16, AMX or Arm BF16) is slower than float32: a batch-32 Nature-CNN update "
              "took 324 ms against 38 ms on one thread of an AMD EPYC without AVX-512",
              file=sys.stderr, flush=True)
