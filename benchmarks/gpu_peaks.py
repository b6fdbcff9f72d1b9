"""The GPU's peak rates, measured on the GPU the benchmarks run on (once per run): the
floors of the GPU benchmarks divide bytes and FLOPs by these. ``DQNFAST_PEAK_GBPS``
and ``DQNFAST_PEAK_TFLOPS`` override them (a datasheet's figures, say)."""
import functools
import os

import torch


def _best_seconds(call, repeats: int = 10) -> float:
    """The fastest of ``repeats`` calls, timed on the GPU with CUDA events."""
    call()  # warm-up: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


@functools.cache
def memory_gbps() -> float:
    """Device-memory bandwidth in GB/s: a 1 GiB device-to-device copy (read + write)."""
    if "DQNFAST_PEAK_GBPS" in os.environ:
        return float(os.environ["DQNFAST_PEAK_GBPS"])
    source = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    return 2 * source.numel() / _best_seconds(lambda: target.copy_(source)) / 1e9


@functools.cache
def fp32_tflops() -> float:
    """Dense float32 matrix-multiply rate in TFLOP/s (TF32 off), from an 8192^3 product."""
    if "DQNFAST_PEAK_TFLOPS" in os.environ:
        return float(os.environ["DQNFAST_PEAK_TFLOPS"])
    n = 8192
    a, b = (torch.randn(n, n, device="cuda") for _ in range(2))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = _best_seconds(lambda: a @ b, repeats=5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / seconds / 1e12
