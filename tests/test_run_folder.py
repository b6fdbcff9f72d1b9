"""Run folders are never clobbered: settings are checked before a folder is made, a
run into a folder that holds one is refused unless told to overwrite it, a failed
resume changes nothing, a save leaves no temporary file, and folder names never nest."""
import shutil
from pathlib import Path

import pytest
import torch

import dqnfast
from dqnfast.checkpoint import save_checkpoint
from dqnfast.presets import parse_args, resolve
from dqnfast.run_log import run_dir_of
from dqnfast.train import train

TINY = dict(buffer_size=2_000, learning_starts=200, batch_size=16, target_update_interval=200,
            epsilon_decay_steps=500, progress=False)


def cartpole(run_dir, **overrides):
    return resolve("cartpole", **{**TINY, "total_steps": 1_000, "checkpoint_interval": 500,
                                  "run_dir": str(run_dir), **overrides})


def folder_contents(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A CartPole run with every file a run has: config, logs, events, best model, checkpoint."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(cartpole(run_dir))
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@pytest.mark.parametrize("flag, value", [
    ("--loss", "l1"), ("--precision", "float16"), ("--optimizer", "sgd"),
    ("--epsilon-schedule", "cosine"), ("--ratio-policy", "x"), ("--num-envs", "0"),
    ("--batch-size", "0"), ("--buffer-size", "-1"), ("--total-steps", "0"),
    ("--train-frequency", "0"), ("--n-step", "0"), ("--hidden", "0"),
])
def test_bad_settings_raise_before_a_folder_is_made(tmp_path, flag, value):
    run_dir = tmp_path / "run"
    name = flag[2:].replace("-", "_")
    with pytest.raises(ValueError, match=f"^{name} must be "):
        parse_args(["--env", "CartPole-v1", "--run-dir", str(run_dir), flag, value])
    assert not run_dir.exists()


def test_a_new_run_into_a_run_folder_is_refused(run_copy):
    before = folder_contents(run_copy)
    with pytest.raises(FileExistsError, match=(
            r"run holds a run already \(config\.json, scalars\.csv, episodes\.csv, best_model\.pt, "
            r"checkpoint, events\.out\.tfevents\..*\); --overwrite replaces its config, logs, "
            r"TensorBoard events, best model and checkpoint")):
        train(cartpole(run_copy))
    assert folder_contents(run_copy) == before


@pytest.mark.parametrize("name", ["config.json", "episodes.csv", "scalars.csv", "checkpoint"])
def test_any_one_file_of_a_run_makes_a_run_folder(tmp_path, name):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if name == "checkpoint":
        (run_dir / name).mkdir()
    else:
        (run_dir / name).write_text("")
    with pytest.raises(FileExistsError, match=f"holds a run already \\({name}\\)"):
        train(cartpole(run_dir))


def test_overwrite_replaces_the_runs_files_and_keeps_others(run_copy):
    (run_copy / "notes.txt").write_text("mine")
    (run_copy / "checkpoint" / "buffer-1.pt.tmp").write_bytes(b"half")
    old_events = sorted(run_copy.glob("events.out.tfevents.*"))
    result = train(cartpole(run_copy, total_steps=320, overwrite=True))  # 40 steps of 8 envs
    assert result.steps == 320
    # A fresh log, not appended to: every episode in it ended by step 320.
    steps = [int(line.split(",")[0]) for line in
             (run_copy / "episodes.csv").read_text().splitlines()[1:]]
    assert len(steps) == result.episodes and max(steps) <= 320
    assert not any(path.exists() for path in old_events)
    assert not (run_copy / "checkpoint").exists()  # none due in 320 steps: the old one is gone
    assert (run_copy / "notes.txt").read_text() == "mine"
    assert parse_args(["--env", "CartPole-v1", "--overwrite"])[0].overwrite


def test_a_failed_resume_changes_nothing(run_copy):
    # A damaged state.pt: found and read before anything is written.
    (run_copy / "checkpoint" / "state.pt").write_bytes(b"")
    before = folder_contents(run_copy)
    cfg, resume = parse_args(["--resume", str(run_copy), "--total-steps", "5000"])
    with pytest.raises(ValueError, match="state.pt is damaged"):
        train(cfg, resume)
    assert folder_contents(run_copy) == before
    # No checkpoint at all.
    shutil.rmtree(run_copy / "checkpoint")
    before = folder_contents(run_copy)
    with pytest.raises(FileNotFoundError, match="has no checkpoint to resume from"):
        train(cfg, resume)
    assert folder_contents(run_copy) == before


def test_a_save_removes_what_a_killed_save_left(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "buffer-7.pt.tmp").write_bytes(b"cut short by a kill")
    buffer = dqnfast.ReplayBuffer(10, (4,), obs_dtype=torch.float32)
    save_checkpoint(tmp_path, {"step": 9}, buffer, 9)
    assert sorted(path.name for path in checkpoint.iterdir()) == ["buffer-9.pt", "state.pt"]


def test_a_resume_removes_what_a_killed_save_left(run_copy):
    checkpoint = run_copy / "checkpoint"
    for name in ("buffer-1500.pt.tmp", "state.pt.tmp"):
        (checkpoint / name).write_bytes(b"cut short by a kill")
    cfg, resume = parse_args(["--resume", str(run_copy), "--total-steps", "1100"])
    train(cfg, resume)  # from step 1000; no save before 1500
    assert sorted(path.name for path in checkpoint.iterdir()) == ["buffer-1000.pt", "state.pt"]


def test_run_folder_names_never_nest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = run_dir_of(resolve(env="ALE/Breakout-v5"), None)
    assert run_dir.parent == Path("runs")
    assert run_dir.name.startswith("ALE-Breakout-v5__atari__1__")
    assert run_dir_of(resolve("cartpole", run_dir="mine"), None) == Path("mine")
