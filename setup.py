"""Builds dqnfast._C with torch.utils.cpp_extension.

C++ sources always; CUDA sources when nvcc and a CUDA build of torch are present.
Environment switches:
  DQNFAST_CUDA=1 / 0     force the CUDA sources in / out
  DQNFAST_SANITIZE=1     build with -fsanitize=address,undefined (see README)
"""
import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def _flag(name):
    value = os.environ.get(name)
    if value not in (None, "", "0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return None if value in (None, "") else value == "1"


def _with_cuda():
    forced = _flag("DQNFAST_CUDA")
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if forced and not available:
        raise RuntimeError(
            "DQNFAST_CUDA=1 needs nvcc and a CUDA build of torch, got torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}) and CUDA_HOME={CUDA_HOME}"
        )
    return available if forced is None else forced


def _extension():
    cuda = _with_cuda()
    sources = ["csrc/ops.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    # No contraction into fused multiply-adds: CPU and CUDA kernels round alike.
    cxx = ["-O3", "-fopenmp", "-std=c++17", "-ffp-contract=off"]
    nvcc = ["-O3", "-std=c++17"]
    link = ["-fopenmp"]
    if _flag("DQNFAST_SANITIZE"):
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        cxx = ["-O1", "-fopenmp", "-std=c++17", "-ffp-contract=off", *sanitize]
        link += sanitize
    if not cuda:
        return CppExtension("dqnfast._C", sources, extra_compile_args={"cxx": cxx},
                            extra_link_args=link)
    sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
    return CUDAExtension("dqnfast._C", sources, extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                         extra_link_args=link)


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
)
