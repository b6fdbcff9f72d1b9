import os
import sys
from pathlib import Path

# The references in tests/ import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))

# cuBLAS takes its workspace configuration when its first handle is created, so it is
# set here, before any test reaches the GPU: with it, cuBLAS is deterministic where a
# test asks for deterministic algorithms (test_update.py's deterministic_cuda).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402


def _has_cuda_kernels() -> bool:
    return torch.cuda.is_available() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "dqnfast::replay_add", "CUDA")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip without a GPU and dqnfast's CUDA kernels."""
    if _has_cuda_kernels():
        return
    skip = pytest.mark.skip(reason="needs a GPU and dqnfast built with its CUDA kernels")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


# Devices to parametrize a subject's tests over (as torchvision's cpu_and_cuda()).
CPU_AND_CUDA = ("cpu", pytest.param("cuda", marks=pytest.mark.cuda))
