"""Learning curve of a run: ``python -m dqnfast.plot RUN_DIR [--out FILE.png]``

Episode returns and their 100-episode mean, against env steps and against wall time.
"""
import argparse
import csv
from pathlib import Path

import numpy as np

from dqnfast.cli import add_debug_flag, entry_point
from dqnfast.extras import require_extra
from dqnfast.run_log import EPISODES_CSV, RETURN_WINDOW


def read_episodes(run_dir) -> dict:
    path = Path(run_dir) / EPISODES_CSV
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no {EPISODES_CSV}: is it a dqnfast run folder?")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(row[name]) for row in rows])
            for name in ("step", "wall_time", "episodic_return")}


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def plot(run_dir, out=None) -> Path:
    require_extra("python -m dqnfast.plot", "train", "matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = read_episodes(run_dir)
    if len(episodes["step"]) == 0:
        raise ValueError(f"{run_dir} has no finished episodes to plot yet")
    mean = running_mean(episodes["episodic_return"], RETURN_WINDOW)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x, label in ((axes[0], episodes["step"], "env steps"),
                         (axes[1], episodes["wall_time"] / 60, "wall time (minutes)")):
        ax.plot(x, episodes["episodic_return"], ".", alpha=0.3, markersize=3, label="episode return")
        ax.plot(x, mean, linewidth=2, label=f"mean of last {RETURN_WINDOW}")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("return")
    axes[0].legend(loc="lower right")
    figure.suptitle(Path(run_dir).name)
    figure.tight_layout()
    out = Path(out) if out else Path(run_dir) / "learning_curve.png"
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


@entry_point
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dqnfast.plot", description=__doc__.split("\n")[0])
    add_debug_flag(parser)
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="PNG file (default: RUN_DIR/learning_curve.png)")
    args = parser.parse_args(argv)
    print(plot(args.run_dir, args.out))


if __name__ == "__main__":
    main()
