import os
import sys
from pathlib import Path

# The textbook baselines in benchmarks/ and the frame helpers of tests/ import as
# plain modules.
root = Path(__file__).parent
sys.path.insert(0, str(root.parent / "tests"))
sys.path.insert(0, str(root))


def pytest_benchmark_update_machine_info(config, machine_info):
    """What a figure depends on, in each --benchmark-json file: torch, the CPU's model
    and its vector extensions (bfloat16 is 10x slower without AVX-512 BF16), the GPU."""
    import torch

    from dqnfast.precision import cpu_has_bfloat16

    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags":
                flags.update(value.split())
    except OSError:
        pass
    machine_info["torch"] = torch.__version__
    machine_info["cpu_model"] = model
    machine_info["cpu_count"] = len(os.sched_getaffinity(0))
    machine_info["avx512f"] = "avx512f" in flags
    machine_info["cpu_bfloat16"] = cpu_has_bfloat16()
    machine_info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
