"""Builds dqnfast._C with torch.utils.cpp_extension, for the torch that is installed.

C++ sources always; CUDA sources where they can be built (see build_config.py for
how the C++ standard, the CUDA toolkit, its headers and the architectures are found).
Environment switches:
  DQNFAST_CUDA=1 / 0     force the CUDA sources in (an error if impossible) / out
  DQNFAST_SANITIZE=1     build with -fsanitize=address,undefined (see README)
  TORCH_CUDA_ARCH_LIST   GPU architectures (default: the visible GPU's, else 8.0;9.0+PTX)
  CUDA_HOME              the CUDA toolkit (default: found from nvcc or the usual places)
"""
import glob
import os
import sys
from pathlib import Path

import torch
from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_config  # noqa: E402

plan = build_config.plan_for_this_machine()
print(build_config.describe(plan), flush=True)
# torch.utils.cpp_extension reads these when imported, so they are set first.
if plan.cuda:
    os.environ["CUDA_HOME"] = str(plan.cuda_home)
    if plan.arch_list:
        os.environ["TORCH_CUDA_ARCH_LIST"] = plan.arch_list
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _extension():
    std = "-std=" + build_config.cxx_standard(Path(torch.__file__).parent / "include")
    sources = ["csrc/ops.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    # No contraction into fused multiply-adds: CPU and CUDA kernels round alike.
    cxx = ["-O3", "-fopenmp", std, "-ffp-contract=off"]
    link = ["-fopenmp"]
    if build_config.switch(os.environ, "DQNFAST_SANITIZE"):
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        cxx = ["-O1", "-fopenmp", std, "-ffp-contract=off", *sanitize]
        link += sanitize
    if not plan.cuda:
        return CppExtension("dqnfast._C", sources, extra_compile_args={"cxx": cxx},
                            extra_link_args=link)
    sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
    return CUDAExtension("dqnfast._C", sources, include_dirs=list(plan.include_dirs),
                         extra_compile_args={"cxx": cxx, "nvcc": ["-O3", std]},
                         extra_link_args=link)


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
)
