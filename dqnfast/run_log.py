"""A training run's folder: TensorBoard scalars, CSV beside them, the episode record;
and which files make a run, which a new run in the same folder refuses to replace
unless told to."""
import csv
import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import List, Optional

from dqnfast.checkpoint import BEST_MODEL, CHECKPOINT_DIR
from dqnfast.config import CONFIG_JSON, Config

SCALARS_CSV = "scalars.csv"
EPISODES_CSV = "episodes.csv"
RETURN_WINDOW = 100  # episodes in the mean that decides "solved" and the best model
TENSORBOARD_EVENTS = "events.out.tfevents.*"


def run_files(run_dir) -> List[Path]:
    """The files of a run in ``run_dir`` (the checkpoint folder as one)."""
    folder = Path(run_dir)
    named = [folder / name for name in (CONFIG_JSON, SCALARS_CSV, EPISODES_CSV, BEST_MODEL,
                                        CHECKPOINT_DIR)]
    return [path for path in named if path.exists()] + sorted(folder.glob(TENSORBOARD_EVENTS))


def refuse_existing_run(run_dir, overwrite: bool) -> None:
    """A FileExistsError where ``run_dir`` holds a run, unless ``overwrite``."""
    found = run_files(run_dir)
    if found and not overwrite:
        raise FileExistsError(
            f"{run_dir} holds a run already ({', '.join(path.name for path in found)}); "
            "--overwrite replaces its config, logs, TensorBoard events, best model and "
            "checkpoint, --resume continues it from its checkpoint, or pick another --run-dir")


def run_dir_of(cfg: Config, resume_dir: Optional[str]) -> Path:
    """The run's folder: the one resumed, ``cfg.run_dir``, or by default
    runs/<env>__<preset>__<seed>__<time>, the env id as one folder name
    (ALE/Breakout-v5: ALE-Breakout-v5). A new run into a folder that holds a run is
    refused here, before anything starts, unless ``cfg.overwrite``."""
    if resume_dir is not None:
        return Path(resume_dir)
    env = re.sub(r"[^A-Za-z0-9._-]", "-", cfg.env)
    run_dir = Path(cfg.run_dir or Path("runs") / (
        f"{env}__{cfg.preset}__{cfg.seed}__{datetime.now():%Y%m%d-%H%M%S}"))
    refuse_existing_run(run_dir, cfg.overwrite)
    return run_dir


def start_run_dir(run_dir, overwrite: bool) -> None:
    """Readies ``run_dir`` for a new run: refused where it holds one, unless
    ``overwrite``, which removes that run's files (other files stay)."""
    refuse_existing_run(run_dir, overwrite)
    for path in run_files(run_dir):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    Path(run_dir).mkdir(parents=True, exist_ok=True)


class RunLog:
    """Writes ``scalars.csv`` (step, wall_time, name, value), ``episodes.csv``
    (step, wall_time, episodic_return, episodic_length, actor: which distributed actor
    played it, empty in a single-process run) and TensorBoard events into ``run_dir``.
    Appends when the files exist (a resumed run)."""

    def __init__(self, run_dir: Path, wall_time_offset: float = 0.0):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._start = time.time() - wall_time_offset
        self._scalars = self._open_csv(SCALARS_CSV, ["step", "wall_time", "name", "value"])
        self._episodes = self._open_csv(EPISODES_CSV,
                                        ["step", "wall_time", "episodic_return", "episodic_length",
                                         "actor"])
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: the CSV files hold everything
            SummaryWriter = None
        self._writer = SummaryWriter(str(self.run_dir)) if SummaryWriter else None

    def _open_csv(self, name, header):
        path = self.run_dir / name
        new = not path.exists()
        handle = path.open("a", newline="")
        writer = csv.writer(handle)
        if new:
            writer.writerow(header)
        return handle, writer

    @property
    def wall_time(self) -> float:
        """Seconds since the run started, resumed runs included."""
        return time.time() - self._start

    def scalar(self, name: str, value: float, step: int) -> None:
        self._scalars[1].writerow([step, f"{self.wall_time:.3f}", name, value])
        if self._writer is not None:
            self._writer.add_scalar(name, value, step)

    def episode(self, episodic_return: float, length: int, step: int,
                actor: Optional[int] = None) -> None:
        self._episodes[1].writerow([step, f"{self.wall_time:.3f}", episodic_return, length,
                                    "" if actor is None else actor])
        self.scalar("charts/episodic_return", episodic_return, step)
        if actor is not None:
            self.scalar(f"actors/episodic_return_{actor}", episodic_return, step)
        self.scalar("charts/episodic_length", length, step)

    def flush(self) -> None:
        for handle, _ in (self._scalars, self._episodes):
            handle.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.flush()
        for handle, _ in (self._scalars, self._episodes):
            handle.close()
        if self._writer is not None:
            self._writer.close()


def write_json(path: Path, value) -> None:
    """Writes ``value`` as JSON through a temporary file, so a kill never leaves half a file."""
    temporary = Path(str(path) + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=list))
    temporary.replace(path)


def truncate_to_step(run_dir: Path, step: int) -> None:
    """Drops CSV rows logged after ``step``: a resumed run repeats those steps."""
    for name in (SCALARS_CSV, EPISODES_CSV):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [row for row in rows[1:] if int(row[0]) <= step]
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)
