"""Prints the figures of pytest-benchmark JSON files, the way RESULTS.md quotes them:

    python benchmarks/table.py [--strip] benchmarks/raw/replay_buffer-2026-12-05.json [...]

One line per benchmark: group, name, min / median in the unit that suits them, the
rounds and any extra_info; above them the run's date, commit, CPU, torch and GPU.
``--strip`` first drops each benchmark's per-round timings from the file (megabytes for
the fast ones), keeping its statistics: what ``benchmarks/raw/`` keeps.
"""
import json
import sys


def human(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:,.3g} {unit}" if unit != "µs" else f"{seconds / scale:,.1f} µs"
    return f"{seconds * 1e9:.0f} ns"


def number(value) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def strip_rounds(path: str) -> None:
    with open(path) as handle:
        run = json.load(handle)
    for bench in run["benchmarks"]:
        bench["stats"].pop("data", None)
    with open(path, "w") as handle:
        json.dump(run, handle, indent=1)


def print_run(path: str) -> None:
    with open(path) as handle:
        run = json.load(handle)
    machine, commit = run["machine_info"], run.get("commit_info", {})
    print(f"# {path}: {run['datetime'][:19]} UTC, commit {str(commit.get('id'))[:7]}"
          f"{' (dirty)' if commit.get('dirty') else ''}")
    print(f"# CPU {machine.get('cpu_model') or machine['cpu'].get('brand_raw')}, "
          f"{machine.get('cpu_count', '?')} usable cores, AVX-512 {machine.get('avx512f', '?')}; "
          f"torch {machine.get('torch', '?')}; GPU {machine.get('gpu')}")
    for bench in run["benchmarks"]:
        stats = bench["stats"]
        extra = ", ".join(f"{k}={number(v)}" for k, v in bench["extra_info"].items())
        print(f"{bench['group'] or '-'} | {bench['name']} | {human(stats['min'])} / "
              f"{human(stats['median'])} | {stats['rounds']} rounds" + (f" | {extra}" if extra else ""))


if __name__ == "__main__":
    strip = "--strip" in sys.argv[1:]
    paths = [argument for argument in sys.argv[1:] if argument != "--strip"]
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        if strip:
            strip_rounds(path)
        print_run(path)
