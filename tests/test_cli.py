"""The command-line tools: a user's mistake is one line, `error: ...`, on stderr and
exit status 2, with no traceback; a bug keeps its traceback, and --debug shows every
error's."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dqnfast import evaluate, plot, precision, train
from dqnfast.presets import resolve

TOOLS = {"train": train.main, "evaluate": evaluate.main, "plot": plot.main}


def fails_with(capsys, tool: str, argv) -> str:
    """The one line a tool prints for a user's mistake (exit status 2)."""
    with pytest.raises(SystemExit) as stopped:
        TOOLS[tool](argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err[len("error: "):-1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A CartPole run with a best model and a checkpoint."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train.train(resolve("cartpole", total_steps=1_000, learning_starts=200, batch_size=16,
                        checkpoint_interval=500, progress=False, run_dir=str(run_dir)))
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_unknown_env(capsys, tmp_path):
    message = fails_with(capsys, "train", ["--env", "Breakot-v5", "--run-dir", str(tmp_path / "run")])
    assert message.startswith("unknown env_id 'Breakot-v5'. Did you mean 'Breakout-v5'")
    assert not (tmp_path / "run").exists()


def test_unknown_env_end_to_end(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dqnfast.train", "--env", "Breakot-v5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown env_id 'Breakot-v5'. Did you mean 'Breakout-v5'")
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_resume_of_a_folder_that_is_no_run(capsys, tmp_path):
    assert fails_with(capsys, "train", ["--resume", str(tmp_path)]) == (
        f"{tmp_path} is not a run folder: it has no config.json")


@pytest.mark.parametrize("flags, message", [
    (["--loss", "l1"], "loss must be one of ('huber', 'mse'), got 'l1'"),
    (["--num-envs", "0"], "num_envs must be an int of at least 1, got 0"),
    (["--torch-threads", "0"], "torch_threads must be an int of at least 1, got 0"),
    (["--acting-refresh-updates", "0"], "acting_refresh_updates must be an int of at least 1, got 0"),
])
def test_bad_settings(capsys, tmp_path, flags, message):
    run_dir = tmp_path / "run"
    assert fails_with(capsys, "train", ["--env", "CartPole-v1", "--run-dir", str(run_dir), *flags]) == message
    assert not run_dir.exists()


@pytest.mark.parametrize("flags", [["--cuda"], []], ids=["gpu", "cpu"])
def test_a_game_its_backend_does_not_have(capsys, tmp_path, flags):
    """Joust is one of ale-py's games, not envpool's."""
    pytest.importorskip("envpool")
    if flags and not torch.cuda.is_available():
        pytest.skip("--cuda gets its own error without a GPU")
    run_dir = tmp_path / "run"
    message = fails_with(capsys, "train", ["--env", "Joust-v5", "--backend", "envpool",
                                           "--run-dir", str(run_dir), *flags])
    assert message == "'Joust-v5' is not among the games of backend='envpool'; try the other backend"
    assert not run_dir.exists()


def test_a_refused_run_folder(capsys, run_copy):
    message = fails_with(capsys, "train", ["--env", "CartPole-v1", "--run-dir", str(run_copy)])
    assert message.startswith(f"{run_copy} holds a run already (config.json, ")
    assert "--overwrite replaces its config, logs, TensorBoard events, best model and checkpoint" in message


def test_missing_box2d_names_what_to_install(capsys, monkeypatch, tmp_path):
    """As where Box2D is not installed: gymnasium's LunarLander cannot import it."""
    monkeypatch.setitem(sys.modules, "Box2D", None)
    for name in [name for name in sys.modules if name.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    message = fails_with(capsys, "train", ["--env", "LunarLander-v3", "--run-dir", str(tmp_path / "run")])
    assert message.startswith("LunarLander-v3 needs a package that is not installed: ")
    assert 'pip install "gymnasium[box2d]"' in message


def test_missing_ray_names_the_distributed_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    message = fails_with(capsys, "train", ["--env", "CartPole-v1", "--actors", "2",
                                           "--run-dir", str(tmp_path / "run")])
    assert message.startswith("--actors needs the 'distributed' extra (missing: ray): pip install ")


def test_actors_beyond_this_machines_cpus(capsys, tmp_path):
    pytest.importorskip("ray")
    actors = (os.cpu_count() or 1) + 1
    message = fails_with(capsys, "train", ["--env", "CartPole-v1", "--actors", str(actors),
                                           "--run-dir", str(tmp_path / "run")])
    assert message.startswith(f"{actors} actors of 1 CPU need {actors} CPUs; this machine has "
                              f"{actors - 1}: lower --actors, or --actor-cpus to share CPUs")
    assert not (tmp_path / "run").exists()


def test_cuda_without_a_gpu(capsys, finished_run, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    expected = "--cuda was given, but torch sees no CUDA GPU"
    assert fails_with(capsys, "train", ["--env", "CartPole-v1", "--cuda",
                                        "--run-dir", str(tmp_path / "run")]).startswith(expected)
    assert fails_with(capsys, "evaluate", [str(finished_run), "--cuda"]).startswith(expected)


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["empty", "half"])
@pytest.mark.parametrize("damaged", ["checkpoint/state.pt", "checkpoint/buffer-1000.pt",
                                     "best_model.pt"])
def test_damaged_checkpoint_files(capsys, run_copy, damaged, keep):
    path = run_copy / damaged
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])  # as a kill or a full disk might leave it
    broken = f"{path} is damaged: torch cannot read it (cut short or overwritten); "
    if damaged == "best_model.pt":
        assert fails_with(capsys, "evaluate", [str(run_copy)]) == broken + (
            "the run's last checkpoint can be evaluated instead: python -m dqnfast.evaluate "
            f"{run_copy / 'checkpoint' / 'state.pt'}")
        return
    no_earlier = broken + ("a run keeps no earlier checkpoint to resume from; its best model "
                           f"can still be evaluated: python -m dqnfast.evaluate "
                           f"{run_copy / 'best_model.pt'}")
    assert fails_with(capsys, "train", ["--resume", str(run_copy), "--total-steps", "2000"]) == no_earlier
    if damaged == "checkpoint/state.pt":
        assert fails_with(capsys, "evaluate", [str(path)]) == no_earlier


def test_evaluate_a_file_that_holds_no_model(capsys, run_copy):
    buffer = run_copy / "checkpoint" / "buffer-1000.pt"
    assert fails_with(capsys, "evaluate", [str(buffer)]) == (
        f"{buffer} holds no dqnfast model: expected a best_model.pt or a checkpoint/state.pt")


def test_plot_of_a_folder_that_is_no_run(capsys, tmp_path):
    assert fails_with(capsys, "plot", [str(tmp_path)]) == (
        f"{tmp_path} has no episodes.csv: is it a dqnfast run folder?")


@pytest.mark.parametrize("tool, argv, error", [
    ("train", ["--env", "Breakot-v5"], ValueError),
    ("evaluate", ["nowhere"], FileNotFoundError),
    ("plot", ["nowhere"], FileNotFoundError),
])
def test_debug_shows_the_traceback(tool, argv, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error):  # raised on, for Python to print with its traceback
        TOOLS[tool]([*argv, "--debug"])


@pytest.mark.parametrize("bug", [KeyError("q_network"), TypeError("'NoneType' object is not "
                                                                  "subscriptable")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    def buggy(*args):
        raise bug
    monkeypatch.setattr(train, "train", buggy)
    with pytest.raises(type(bug)):
        train.main(["--env", "CartPole-v1"])


@pytest.mark.parametrize("native", [False, True, None], ids=["emulated", "native", "unknown"])
def test_bfloat16_on_a_cpu_without_it_warns_once(capsys, monkeypatch, tmp_path, native):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: native)
    train.main(["--env", "CartPole-v1", "--precision", "bfloat16", "--total-steps", "80",
                "--no-progress", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    if native is False:
        assert err.startswith("warning: --precision bfloat16 on a CPU without bfloat16 "
                              "instructions (AVX-512 BF16, AMX or Arm BF16) is slower than float32")
        assert err.count("\n") == 1
    else:
        assert "warning" not in err


@pytest.mark.parametrize("machine, flags, native", [
    ("x86_64", "fpu sse avx2 avx512f", False),
    ("x86_64", "fpu avx2 avx512f avx512_bf16", True),
    ("x86_64", "fpu avx2 amx_bf16 amx_tile", True),
    ("aarch64", "fp asimd bf16", True),
    ("aarch64", "fp asimd", False),
    ("riscv64", "bf16", None),
])
def test_bfloat16_support_is_read_from_the_cpu_flags(monkeypatch, machine, flags, native):
    key = "Features" if machine == "aarch64" else "flags"
    cpuinfo = f"processor\t: 0\n{key}\t\t: {flags}\n\nprocessor\t: 1\n{key}\t\t: {flags}\n"
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(precision.sys, "platform", "linux")
    monkeypatch.setattr(precision.Path, "read_text", lambda self: cpuinfo)
    assert precision.cpu_has_bfloat16() is native
