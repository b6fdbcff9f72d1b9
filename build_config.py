"""How ``setup.py`` builds ``dqnfast._C`` for the torch that is installed.

Each choice is a plain function of what is on the machine, so it can be tested:

* the C++ standard: the one the installed torch's headers require (``ATen/ATen.h``
  states it: C++17 up to torch 2.13, C++20 from 2.14), for the C++ and CUDA sources;
* the CUDA toolkit: ``CUDA_HOME`` (or ``CUDA_PATH``) when set, else the toolkit of
  the ``nvcc`` on the PATH (resolved through symlinks, and through wrapper scripts
  by asking nvcc itself), else the usual places (``/usr/local/cuda``, the newest
  ``/usr/local/cuda-*``, ``/opt/cuda``);
* headers that torch's CUDA headers include but a toolkit may lack (cuBLAS,
  cuSPARSE, cuSOLVER): from the toolkit, else from torch's own ``nvidia`` wheels;
* the GPU architectures: ``TORCH_CUDA_ARCH_LIST`` when set; else, with no GPU
  visible, ``DEFAULT_CUDA_ARCH_LIST`` (Ampere and Hopper machine code, and Hopper
  PTX that newer GPUs compile at load time); with a GPU visible, torch's own choice
  (that GPU's architecture).

When the CUDA sources cannot be built (a CPU build of torch, no toolkit, a toolkit
of another CUDA major version than torch's, headers missing), the build goes on
with the C++ kernels only and says why in one line; ``DQNFAST_CUDA=1`` turns that
into an error naming what is missing, ``DQNFAST_CUDA=0`` leaves CUDA out.

``python build_config.py`` prints the plan without building anything.
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Mapping, NamedTuple, Optional

DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"

# Headers that torch's ATen/cuda/CUDAContext.h includes, by the library that ships them.
EXTRA_CUDA_HEADERS = {"cuBLAS": "cublas_v2.h", "cuSPARSE": "cusparse.h", "cuSOLVER": "cusolverDn.h"}

_CPLUSPLUS_STANDARDS = {201703: "c++17", 202002: "c++20", 202302: "c++23"}


class CudaPlan(NamedTuple):
    """What to build: ``cuda`` false means the C++ kernels only, for ``reason``."""

    cuda: bool
    reason: str
    cuda_home: Optional[Path] = None
    include_dirs: tuple = ()
    arch_list: Optional[str] = None  # None: torch picks (the visible GPU's architecture)


def cxx_standard(torch_include: Path) -> str:
    """The -std= value torch's headers require, read from their own check in ATen/ATen.h."""
    header = Path(torch_include) / "ATen" / "ATen.h"
    try:
        text = header.read_text(errors="replace")
    except OSError as error:
        raise RuntimeError(f"cannot read {header} to learn the C++ standard torch needs: "
                           f"{error}") from None
    found = re.search(r"__cplusplus\s*<\s*(\d{6})L", text)
    if found is None:
        return "c++17"  # torch releases before the check existed needed C++17
    version = int(found.group(1))
    if version not in _CPLUSPLUS_STANDARDS:
        raise RuntimeError(f"{header} requires __cplusplus >= {version}L, a C++ standard "
                           f"this build does not know ({sorted(_CPLUSPLUS_STANDARDS)})")
    return _CPLUSPLUS_STANDARDS[version]


def is_toolkit(path: Optional[Path]) -> bool:
    """A CUDA toolkit: nvcc and the runtime headers under one root."""
    return (path is not None and (path / "bin" / "nvcc").is_file()
            and (path / "include" / "cuda_runtime_api.h").is_file())


def toolkit_of_nvcc(nvcc: str) -> Optional[Path]:
    """The toolkit an nvcc on the PATH belongs to: through symlinks, else by asking it
    (a wrapper script's own directory says nothing; nvcc's dry run prints TOP=root/bin/..)."""
    real = Path(os.path.realpath(nvcc))
    if is_toolkit(real.parent.parent):
        return real.parent.parent
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "probe.cu"
        source.write_text("")
        try:
            run = subprocess.run([nvcc, "-v", "--dryrun", "-c", str(source)], capture_output=True,
                                 text=True, timeout=60, cwd=scratch)
        except (OSError, subprocess.SubprocessError):
            return None
    top = re.search(r"^#\$ TOP=(.+)$", run.stdout + run.stderr, re.MULTILINE)
    if top is None:
        return None
    root = Path(os.path.normpath(top.group(1).strip()))  # TOP is the toolkit's root
    return root if is_toolkit(root) else None


def find_cuda_toolkit(environ: Mapping[str, str], nvcc_on_path: Optional[str],
                      usual_places: Optional[List[Path]] = None) -> Optional[Path]:
    """The CUDA toolkit to build with, or None (see the module docstring for the order)."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(name):
            return Path(environ[name])  # explicit: used as given, checked by the caller
    if nvcc_on_path:
        found = toolkit_of_nvcc(nvcc_on_path)
        if found is not None:
            return found
    if usual_places is None:
        versioned = sorted(glob.glob("/usr/local/cuda-*"), key=_version_key, reverse=True)
        usual_places = [Path("/usr/local/cuda"), *map(Path, versioned), Path("/opt/cuda")]
    return next((place for place in usual_places if is_toolkit(place)), None)


def _version_key(path: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", Path(path).name))


def toolkit_cuda_major(cuda_home: Path) -> Optional[int]:
    """The CUDA major version of a toolkit, from CUDA_VERSION in its cuda.h (13000 -> 13)."""
    try:
        text = (cuda_home / "include" / "cuda.h").read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r"#define\s+CUDA_VERSION\s+(\d+)", text)
    return int(found.group(1)) // 1000 if found else None


def extra_header_dirs(cuda_home: Path, torch_dir: Path):
    """(include dirs to add, libraries whose headers were found nowhere) for EXTRA_CUDA_HEADERS:
    the toolkit's own, else those of torch's nvidia wheels (site-packages/nvidia/*/include)."""
    wheel_dirs = sorted(glob.glob(str(Path(torch_dir).parent / "nvidia" / "*" / "include")))
    dirs, missing = [], []
    for library, header in EXTRA_CUDA_HEADERS.items():
        if (cuda_home / "include" / header).is_file():
            continue
        found = next((d for d in wheel_dirs if (Path(d) / header).is_file()), None)
        if found is None:
            missing.append(f"{library} ({header})")
        elif found not in dirs:
            dirs.append(found)
    return dirs, missing


def cuda_arch_list(environ: Mapping[str, str], gpu_visible: bool) -> Optional[str]:
    if environ.get("TORCH_CUDA_ARCH_LIST"):
        return environ["TORCH_CUDA_ARCH_LIST"]
    return None if gpu_visible else DEFAULT_CUDA_ARCH_LIST


def switch(environ: Mapping[str, str], name: str) -> Optional[bool]:
    """An environment switch that is unset, 0 or 1."""
    value = environ.get(name)
    if value not in (None, "", "0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return None if value in (None, "") else value == "1"


def plan_cuda(environ: Mapping[str, str], torch_cuda: Optional[str], torch_dir: Path,
              nvcc_on_path: Optional[str], gpu_visible: bool,
              usual_places: Optional[List[Path]] = None) -> CudaPlan:
    """Decides whether the CUDA sources are built, and how. ``torch_cuda`` is
    ``torch.version.cuda`` (None for a CPU build of torch)."""
    forced = switch(environ, "DQNFAST_CUDA")
    if forced is False:
        return CudaPlan(False, "DQNFAST_CUDA=0")
    missing = _why_no_cuda(environ, torch_cuda, torch_dir, nvcc_on_path, usual_places)
    if isinstance(missing, str):
        if forced:
            raise RuntimeError(f"DQNFAST_CUDA=1, but the CUDA kernels cannot be built: {missing}")
        return CudaPlan(False, missing)
    cuda_home, include_dirs = missing
    return CudaPlan(True, f"CUDA {torch_cuda} toolkit at {cuda_home}", cuda_home,
                    tuple(include_dirs), cuda_arch_list(environ, gpu_visible))


def _why_no_cuda(environ, torch_cuda, torch_dir, nvcc_on_path, usual_places):
    """A sentence saying what is missing, or (toolkit, extra include dirs)."""
    if torch_cuda is None:
        return "torch is a CPU build (install a CUDA build of torch for the CUDA kernels)"
    cuda_home = find_cuda_toolkit(environ, nvcc_on_path, usual_places)
    if cuda_home is None:
        return ("no CUDA toolkit found (set CUDA_HOME, or put nvcc on the PATH; looked in "
                "/usr/local/cuda, /usr/local/cuda-*, /opt/cuda)")
    if not is_toolkit(cuda_home):
        return f"CUDA_HOME={cuda_home} holds no bin/nvcc and include/cuda_runtime_api.h"
    major = toolkit_cuda_major(cuda_home)
    wanted = int(torch_cuda.split(".")[0])
    if major != wanted:
        return (f"the CUDA toolkit at {cuda_home} is CUDA {major}, torch is built for CUDA "
                f"{torch_cuda}: install a CUDA {wanted} toolkit or a torch built for CUDA {major}")
    include_dirs, missing = extra_header_dirs(cuda_home, torch_dir)
    if missing:
        return (f"the CUDA toolkit at {cuda_home} lacks the headers of {', '.join(missing)}, "
                "and torch's nvidia wheels do not carry them either")
    return cuda_home, include_dirs


def plan_for_this_machine() -> CudaPlan:
    import torch
    return plan_cuda(os.environ, torch.version.cuda, Path(torch.__file__).parent,
                     shutil.which("nvcc"), torch.cuda.is_available())


def describe(plan: CudaPlan) -> str:
    if not plan.cuda:
        return f"dqnfast: building the C++ kernels only: {plan.reason}"
    arch = plan.arch_list or "the visible GPU's"
    return f"dqnfast: building the C++ and CUDA kernels ({plan.reason}; architectures {arch})"


if __name__ == "__main__":
    print(describe(plan_for_this_machine()))
