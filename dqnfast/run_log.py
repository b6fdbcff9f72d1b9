"""A training run's folder: TensorBoard scalars, CSV beside them, the episode record."""
import csv
import json
import time
from pathlib import Path
from typing import Optional

SCALARS_CSV = "scalars.csv"
EPISODES_CSV = "episodes.csv"


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
