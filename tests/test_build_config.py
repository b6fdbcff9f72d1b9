"""The build's choices (build_config.py) for given machines, and what `import dqnfast`
says when the compiled core is missing."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_config", ROOT / "build_config.py")
build_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_config)


def fake_torch_include(tmp_path: Path, check: str) -> Path:
    include = tmp_path / "include"
    (include / "ATen").mkdir(parents=True)
    (include / "ATen" / "ATen.h").write_text(f"#pragma once\n{check}\n#include <ATen/Context.h>\n")
    return include


@pytest.mark.parametrize("check, standard", [
    ("#if !defined(_MSC_VER) && __cplusplus < 201703L\n#error C++17 or later\n#endif", "c++17"),
    ("#if !defined(_MSC_VER) && __cplusplus < 202002L\n#error C++20 or later\n#endif", "c++20"),
    ("", "c++17"),  # releases before the check
])
def test_cxx_standard_follows_torch_headers(tmp_path, check, standard):
    assert build_config.cxx_standard(fake_torch_include(tmp_path, check)) == standard


def test_cxx_standard_of_the_installed_torch():
    standard = build_config.cxx_standard(Path(torch.__file__).parent / "include")
    major, minor = (int(n) for n in torch.__version__.split(".")[:2])
    # torch 2.14's headers are the first to refuse C++17.
    assert standard == ("c++20" if (major, minor) >= (2, 14) else "c++17")


def test_cxx_standard_unknown_or_missing(tmp_path):
    with pytest.raises(RuntimeError, match="199711"):
        build_config.cxx_standard(fake_torch_include(tmp_path, "#if __cplusplus < 199711L"))
    with pytest.raises(RuntimeError, match="cannot read"):
        build_config.cxx_standard(tmp_path / "nowhere")


def fake_toolkit(root: Path, cuda_version: int = 13000, extra_headers=()) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\nexit 0\n")
    nvcc.chmod(0o755)
    (root / "include" / "cuda_runtime_api.h").write_text("")
    (root / "include" / "cuda.h").write_text(f"#define CUDA_VERSION {cuda_version}\n")
    for header in extra_headers:
        (root / "include" / header).write_text("")
    return root


ALL_EXTRA = tuple(build_config.EXTRA_CUDA_HEADERS.values())


def test_explicit_cuda_home_wins(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda-explicit")
    other = fake_toolkit(tmp_path / "cuda-other")
    found = build_config.find_cuda_toolkit({"CUDA_HOME": str(toolkit)},
                                           str(other / "bin" / "nvcc"), [other])
    assert found == toolkit


def test_nvcc_symlink_resolves_to_its_toolkit(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda-12.8")
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "nvcc"
    link.symlink_to(toolkit / "bin" / "nvcc")
    assert build_config.find_cuda_toolkit({}, str(link), []) == toolkit


def test_nvcc_wrapper_script_is_asked_for_its_toolkit(tmp_path):
    # A wrapper in another directory (as /usr/local/bin/nvcc -> exec .../cuda-13.0/bin/nvcc):
    # its own location says nothing; nvcc's dry run names the toolkit.
    toolkit = fake_toolkit(tmp_path / "opt" / "cuda-13.0")
    (toolkit / "bin" / "nvcc").write_text(
        f"#!/bin/sh\necho '#$ _NVVM_BRANCH_=nvvm' >&2\necho '#$ TOP={toolkit}/bin/..' >&2\n")
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    assert build_config.find_cuda_toolkit({}, str(wrapper), []) == toolkit


def test_usual_places_when_nvcc_is_not_on_the_path(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda-13.0")
    assert build_config.find_cuda_toolkit({}, None, [tmp_path / "cuda", toolkit]) == toolkit
    assert build_config.find_cuda_toolkit({}, None, [tmp_path / "cuda"]) is None


def test_arch_list():
    assert build_config.cuda_arch_list({}, gpu_visible=False) == build_config.DEFAULT_CUDA_ARCH_LIST
    assert "8.0" in build_config.DEFAULT_CUDA_ARCH_LIST and "9.0+PTX" in build_config.DEFAULT_CUDA_ARCH_LIST
    assert build_config.cuda_arch_list({}, gpu_visible=True) is None  # torch uses the GPU's own
    assert build_config.cuda_arch_list({"TORCH_CUDA_ARCH_LIST": "9.0"}, gpu_visible=False) == "9.0"


def plan(tmp_path, environ=None, torch_cuda="13.0", toolkit=None, wheels=()):
    """plan_cuda on a machine whose torch lives in tmp_path/site-packages/torch,
    with header files `wheels` in its nvidia/cu13/include, and `toolkit` as the only place."""
    torch_dir = tmp_path / "site-packages" / "torch"
    torch_dir.mkdir(parents=True, exist_ok=True)
    wheel_include = tmp_path / "site-packages" / "nvidia" / "cu13" / "include"
    wheel_include.mkdir(parents=True, exist_ok=True)
    for header in wheels:
        (wheel_include / header).write_text("")
    places = [toolkit] if toolkit else []
    return build_config.plan_cuda(environ or {}, torch_cuda, torch_dir, None, False, places)


def test_plan_builds_cuda_with_headers_from_the_toolkit(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda", extra_headers=ALL_EXTRA)
    p = plan(tmp_path, toolkit=toolkit)
    assert p.cuda and p.cuda_home == toolkit and p.include_dirs == ()
    assert p.arch_list == build_config.DEFAULT_CUDA_ARCH_LIST


def test_plan_takes_missing_cublas_headers_from_torch_wheels(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")  # no cuBLAS/cuSPARSE/cuSOLVER headers
    p = plan(tmp_path, toolkit=toolkit, wheels=ALL_EXTRA)
    assert p.cuda
    assert p.include_dirs == (str(tmp_path / "site-packages" / "nvidia" / "cu13" / "include"),)


@pytest.mark.parametrize("case, reason", [
    ("cpu_torch", "torch is a CPU build"),
    ("no_toolkit", "no CUDA toolkit found"),
    ("headers_missing", "lacks the headers of cuSOLVER (cusolverDn.h)"),
    ("other_major", "is CUDA 12, torch is built for CUDA 13.0"),
])
def test_plan_falls_back_to_cpu_with_its_reason_and_cuda_1_makes_it_an_error(tmp_path, case, reason):
    args = dict(toolkit=fake_toolkit(tmp_path / "cuda"), wheels=("cublas_v2.h", "cusparse.h"))
    if case == "cpu_torch":
        args["torch_cuda"] = None
    elif case == "no_toolkit":
        args["toolkit"] = None
    elif case == "other_major":
        args["toolkit"] = fake_toolkit(tmp_path / "cuda-12", cuda_version=12080, extra_headers=ALL_EXTRA)
    p = plan(tmp_path, **args)
    assert not p.cuda and reason in p.reason
    assert build_config.describe(p) == f"dqnfast: building the C++ kernels only: {p.reason}"
    with pytest.raises(RuntimeError, match="DQNFAST_CUDA=1, but the CUDA kernels cannot be built: "):
        plan(tmp_path, environ={"DQNFAST_CUDA": "1"}, **args)


def test_plan_cuda_0_and_bad_switch(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda", extra_headers=ALL_EXTRA)
    assert not plan(tmp_path, environ={"DQNFAST_CUDA": "0"}, toolkit=toolkit).cuda
    with pytest.raises(ValueError, match="DQNFAST_CUDA must be 0 or 1, got 'yes'"):
        plan(tmp_path, environ={"DQNFAST_CUDA": "yes"}, toolkit=toolkit)
    with pytest.raises(RuntimeError, match="holds no bin/nvcc"):
        plan(tmp_path, environ={"CUDA_HOME": str(tmp_path / "nowhere"), "DQNFAST_CUDA": "1"})


def test_import_without_the_compiled_core_says_how_to_build_it(tmp_path):
    package = tmp_path / "dqnfast"
    shutil.copytree(ROOT / "dqnfast", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    # The copy, not the installed (editable) package, whose finder would come first.
    code = ("import sys; sys.meta_path = [f for f in sys.meta_path "
            "if not f.__module__.startswith('__editable__')]; import dqnfast")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: dqnfast's compiled core (dqnfast._C) is not built; "
                           "build it with: pip install --no-build-isolation -e ."), run.stderr
