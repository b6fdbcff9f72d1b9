"""End-to-end training benchmarks: dqnfast's whole loop against the textbook loops.

    python -m pytest benchmarks/bench_training.py --benchmark-only      # timings
    python -m pytest benchmarks/bench_training.py --benchmark-disable   # each once (smoke)

Each group pairs one textbook loop (``textbook_loops.py``) with ``dqnfast.train.train``
on the same settings, and each timed round is one whole run from nothing: making the
environment and the networks, acting, storing, updating, syncing the target, for a fixed
number of environment steps. ``extra_info`` holds ``steps_per_second`` (environment
steps per second, the median over the rounds), ``transitions_per_second`` (the steps
that stored a transition: dqnfast's next-step-autoreset envs spend one step per episode
end on the reset, the textbook loops reset outside ``step``), ``round_seconds``,
``torch_threads`` and, for dqnfast, ``speedup_vs_textbook`` (its steps/s over the
textbook's of the same group, in this run).
A table of the pairs is printed at the end of the module.

Groups:

  train-cartpole   The PyTorch tutorial (seed 000) against dqnfast: CartPole-v1, one env,
                   MLP 128-128, AdamW (amsgrad) 1e-4, Huber, batch 128, buffer 10k, gamma
                   0.99, exponential epsilon 0.9 -> 0.05 (time constant 1000 steps), one
                   update per env step from step 500 on, soft target update tau 0.005.
                   5,000 steps. The project's target: dqnfast at least 5x the tutorial.
  train-pong       The book chapter's loop (seed 004) against dqnfast: Pong, one env,
                   frame skip 4 with max-pool, FIRE at reset, no episodic life, no reward
                   clipping, 4 stacked 84x84 frames, Nature CNN, Adam 1e-4, MSE, batch 32,
                   buffer 10k, linear epsilon 1.0 -> 0.02 over 100k frames, one update per
                   step from step 100 on, hard target sync every 1000 steps. 300 steps: on
                   this CPU the convolutions dominate both, so no target, just the ratio.
  solve-cartpole   Time to solve CartPole-v1 (100-episode mean 475) with the ``cartpole``
                   preset, the whole run of ``python -m dqnfast.train --env CartPole-v1
                   --seed N`` for seeds 1-3, one round each; ``extra_info``: ``steps``.
  train-pong-cuda  (GPU only) The same Pong settings with one update per 4 steps (the
                   Nature paper's rate), 6,000 steps from step 1,000, both on CUDA; dqnfast
                   with CUDA graphs and its GPU buffer, and "dqnfast-eager" with neither.

What stays different, on purpose (it is what each side is): the tutorial clips gradients
by value at 100 and soft-updates its target after every step, also before learning
starts, through ``state_dict``; dqnfast does not clip (``max_grad_norm=None``) and
lerps the target after each update. The chapter's env is gymnasium + ale-py with its
Python wrappers (gray 84x110 crop, float32 stacks); dqnfast's is envpool (or ALE) with
native preprocessing (plain 84x84 resize, uint8 stacks). dqnfast also writes its run
folder (CSV and TensorBoard scalars, the best model) as it would in any run.

Threads: torch runs with ``DQNFAST_BENCH_THREADS`` intra-op threads (default 1) in both
loops. On the shared 2-core project machine, with other processes busy, torch's
default of 2 OpenMP threads made every update 20-300x slower (spinning threads waiting
for a core), which would make the ratios noise; 1 thread is also what the one-env
CartPole loops use best.
"""
import csv
import os
import statistics
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("cv2", reason="the chapter's Pong wrappers resize with OpenCV")
pytest.importorskip("ale_py", reason="the chapter's Pong loop plays through ale-py")
import textbook_loops  # noqa: E402
from dqnfast.presets import resolve  # noqa: E402
from dqnfast.train import train  # noqa: E402

SEED = 1
TORCH_THREADS = int(os.environ.get("DQNFAST_BENCH_THREADS", "1"))
CARTPOLE_TARGET_SPEEDUP = 5.0

CARTPOLE = dict(total_steps=5_000, learning_starts=500, buffer_size=10_000, batch_size=128,
                learning_rate=1e-4, gamma=0.99, tau=0.005, epsilon_start=0.9,
                epsilon_end=0.05, epsilon_decay_steps=1_000, rounds=3)
PONG = dict(total_steps=300, learning_starts=100, buffer_size=10_000, batch_size=32,
            learning_rate=1e-4, gamma=0.99, target_update_interval=1_000, epsilon_start=1.0,
            epsilon_end=0.02, epsilon_decay_steps=100_000, train_frequency=1, rounds=2)
# The chapter's Pong env as dqnfast options: its wrappers skip 4 frames with a max-pool
# of the last two, press FIRE at reset, stack 4 frames; no no-op starts (envpool takes
# at least one), no episodic life, no reward clipping, no sticky actions.
PONG_ENV_OPTIONS = dict(frame_skip=4, fire_reset=True, noop_max=0, episodic_life=False,
                        reward_clip=False, repeat_action_probability=0.0, frame_stack=4)

# group -> {"textbook" | "dqnfast": {"steps_per_second": ..., ...}}, for the final table.
RESULTS = {}


# -- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def warm_and_report(request):
    """One-time process costs kept out of every timed round (both sides would pay them
    once, in their first round): torch's lazy dynamo import (from the optimizers), the
    TensorBoard writer's import, envpool's and ALE's first make. At the end, the table."""
    import torch._dynamo  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    from dqnfast import envs

    envs.make("Pong-v5", num_envs=1, seed=SEED, **PONG_ENV_OPTIONS).close()
    envs.make("CartPole-v1", num_envs=1, seed=SEED).close()
    textbook_loops.make_chapter_env(SEED).close()
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        _print_table(request.config)
    else:
        with capture.global_and_fixture_disabled():
            _print_table(request.config)


@pytest.fixture
def torch_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield TORCH_THREADS
    torch.set_num_threads(previous)


# -- helpers -----------------------------------------------------------------------------

def measure(benchmark, group, name, run, rounds, threads):
    """Times ``run(round_index)``, which returns (env steps, transitions stored), for
    ``rounds`` rounds and records the median over the rounds of each rate."""
    times, counts = [], []

    def one_round():
        start = time.perf_counter()
        counts.append(run(len(times)))
        times.append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    result = {
        "steps": counts[0][0],
        "steps_per_second": statistics.median(s / t for (s, _), t in zip(counts, times)),
        "transitions_per_second": statistics.median(n / t for (_, n), t in zip(counts, times)),
        "round_seconds": [round(t, 3) for t in times],
        "torch_threads": threads,
    }
    RESULTS.setdefault(group, {})[name] = result
    benchmark.extra_info.update({k: (round(v, 2) if isinstance(v, float) else v)
                                 for k, v in result.items()})
    textbook = RESULTS[group].get("textbook")
    if name != "textbook" and textbook is not None:
        benchmark.extra_info["speedup_vs_textbook"] = round(
            result["steps_per_second"] / textbook["steps_per_second"], 2)
    return result


def reset_steps(run_dir, total_steps):
    """Steps dqnfast spent only resetting an env: one after each episode that ended
    before the last step (its next-step autoreset), from the run's episode record."""
    with open(Path(run_dir) / "episodes.csv", newline="") as f:
        return sum(int(row["step"]) < total_steps for row in csv.DictReader(f))


def dqnfast_run(tmp_path, preset, total_steps, **overrides):
    def run(index):
        run_dir = tmp_path / f"dqnfast-{index}"
        cfg = resolve(preset, num_envs=1, total_steps=total_steps, seed=SEED,
                      reward_bound=None, progress=False, run_dir=str(run_dir), **overrides)
        result = train(cfg)
        assert result.steps == total_steps
        return result.steps, result.steps - reset_steps(run_dir, total_steps)
    return run


# -- CartPole: the PyTorch tutorial ------------------------------------------------------

@pytest.mark.benchmark(group="train-cartpole")
def test_train_cartpole_textbook(benchmark, torch_threads):
    c = CARTPOLE

    def run(index):
        result = textbook_loops.tutorial_cartpole(
            c["total_steps"], learning_starts=c["learning_starts"], batch_size=c["batch_size"],
            gamma=c["gamma"], eps_start=c["epsilon_start"], eps_end=c["epsilon_end"],
            eps_decay=c["epsilon_decay_steps"], tau=c["tau"], lr=c["learning_rate"],
            memory_size=c["buffer_size"], seed=SEED)
        assert result.steps == c["total_steps"]
        assert result.updates == c["total_steps"] - c["learning_starts"] + 1
        return result.steps, result.steps

    measure(benchmark, "train-cartpole", "textbook", run, c["rounds"], torch_threads)


@pytest.mark.benchmark(group="train-cartpole")
def test_train_cartpole_dqnfast(benchmark, torch_threads, tmp_path):
    c = CARTPOLE
    run = dqnfast_run(
        tmp_path, "cartpole", c["total_steps"], learning_starts=c["learning_starts"],
        buffer_size=c["buffer_size"], batch_size=c["batch_size"], optimizer="adamw",
        learning_rate=c["learning_rate"], adam_eps=1e-8, max_grad_norm=None, loss="huber",
        gamma=c["gamma"], hidden=(128, 128), dueling=False, double_dqn=False,
        train_frequency=1, gradient_steps=1, tau=c["tau"], epsilon_schedule="exponential",
        epsilon_start=c["epsilon_start"], epsilon_end=c["epsilon_end"],
        epsilon_decay_steps=c["epsilon_decay_steps"])
    measure(benchmark, "train-cartpole", "dqnfast", run, c["rounds"], torch_threads)


# -- Pong: the book chapter ----------------------------------------------------------------

def chapter_run(tmp_path, c, device="cpu"):
    def run(index):
        run_dir = tmp_path / f"chapter-{index}"
        run_dir.mkdir()
        result = textbook_loops.chapter_pong(
            c["total_steps"], replay_start_size=c["learning_starts"],
            replay_size=c["buffer_size"], batch_size=c["batch_size"], gamma=c["gamma"],
            learning_rate=c["learning_rate"], sync_target_frames=c["target_update_interval"],
            epsilon_start=c["epsilon_start"], epsilon_final=c["epsilon_end"],
            epsilon_decay_last_frame=c["epsilon_decay_steps"], mean_reward_bound=None,
            run_dir=run_dir, seed=SEED, device=device, train_frequency=c["train_frequency"])
        assert result.steps == c["total_steps"]
        updating = c["total_steps"] - c["learning_starts"] + 1
        assert result.updates in (updating // c["train_frequency"],
                                  updating // c["train_frequency"] + 1)
        return result.steps, result.steps
    return run


def dqnfast_pong_run(tmp_path, c, **overrides):
    """dqnfast with the chapter's settings ``c``, as the chapter's loop runs them."""
    return dqnfast_run(
        tmp_path, "pong-chapter", c["total_steps"], env="Pong-v5", env_options=PONG_ENV_OPTIONS,
        learning_starts=c["learning_starts"], buffer_size=c["buffer_size"],
        batch_size=c["batch_size"], optimizer="adam", learning_rate=c["learning_rate"],
        adam_eps=1e-8, max_grad_norm=None, loss="mse", gamma=c["gamma"], dueling=False,
        double_dqn=False, train_frequency=c["train_frequency"], gradient_steps=1, tau=1.0,
        target_update_interval=c["target_update_interval"], epsilon_schedule="linear",
        epsilon_start=c["epsilon_start"], epsilon_end=c["epsilon_end"],
        epsilon_decay_steps=c["epsilon_decay_steps"], **overrides)


@pytest.mark.benchmark(group="train-pong")
def test_train_pong_textbook(benchmark, torch_threads, tmp_path):
    measure(benchmark, "train-pong", "textbook", chapter_run(tmp_path, PONG), PONG["rounds"],
            torch_threads)


@pytest.mark.benchmark(group="train-pong")
def test_train_pong_dqnfast(benchmark, torch_threads, tmp_path):
    measure(benchmark, "train-pong", "dqnfast", dqnfast_pong_run(tmp_path, PONG), PONG["rounds"],
            torch_threads)


# -- CartPole solved with its preset -------------------------------------------------------

@pytest.mark.benchmark(group="solve-cartpole")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_solve_cartpole(benchmark, tmp_path, seed):
    cfg = resolve("cartpole", seed=seed, progress=False, run_dir=str(tmp_path / "run"))
    result = benchmark.pedantic(lambda: train(cfg), rounds=1, iterations=1)
    assert result.solved, result
    benchmark.extra_info.update(steps=result.steps, episodes=result.episodes)


# -- Pong on a GPU with the Nature paper's update rate -------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
# The chapter's Pong settings with one update per 4 steps (the Nature paper's rate).
PONG_CUDA = dict(PONG, total_steps=6_000, learning_starts=1_000, train_frequency=4, rounds=2)


@needs_cuda
@pytest.mark.benchmark(group="train-pong-cuda")
def test_train_pong_cuda_textbook(benchmark, torch_threads, tmp_path):
    measure(benchmark, "train-pong-cuda", "textbook", chapter_run(tmp_path, PONG_CUDA, "cuda"),
            PONG_CUDA["rounds"], torch_threads)


@needs_cuda
@pytest.mark.parametrize("variant", ["dqnfast", "dqnfast-eager"])
@pytest.mark.benchmark(group="train-pong-cuda")
def test_train_pong_cuda_dqnfast(benchmark, torch_threads, tmp_path, variant):
    """dqnfast on the same settings: CUDA graphs and the GPU buffer, or neither."""
    graphs = variant == "dqnfast"
    run = dqnfast_pong_run(tmp_path, PONG_CUDA, cuda=True, cuda_graph=graphs,
                           replay_on_gpu=graphs)
    measure(benchmark, "train-pong-cuda", variant, run, PONG_CUDA["rounds"], torch_threads)


# -- the table ---------------------------------------------------------------------------

def _print_table(config):
    if not RESULTS:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter is not None else print
    disabled = config.getoption("benchmark_disable", default=False)
    write("")
    write(f"end-to-end training, env steps/s (median of the rounds; torch threads {TORCH_THREADS}"
          f"{'; benchmarks disabled: one round, smoke numbers only' if disabled else ''})")
    write(f"{'group':<16}{'textbook':>12}{'dqnfast':>12}{'ratio':>8}"
          f"{'transitions/s ratio':>22}")
    for group, pair in RESULTS.items():
        textbook = pair.get("textbook")
        for name, result in pair.items():
            if name == "textbook" and len(pair) > 1:
                continue
            label = f"{group} ({name})" if name not in ("dqnfast", "textbook") else group
            cells = [f"{r['steps_per_second']:12.1f}" if r else f"{'-':>12}"
                     for r in (textbook, result if name != "textbook" else None)]
            if textbook and name != "textbook":
                ratio = result["steps_per_second"] / textbook["steps_per_second"]
                ratio_t = result["transitions_per_second"] / textbook["transitions_per_second"]
                target = (f"  (target {CARTPOLE_TARGET_SPEEDUP:g}x: "
                          f"{'met' if ratio >= CARTPOLE_TARGET_SPEEDUP else 'missed'})"
                          if group == "train-cartpole" else "")
                write(f"{label:<16}{cells[0]}{cells[1]}{ratio:7.2f}x{ratio_t:21.2f}x{target}")
            else:
                write(f"{label:<16}{cells[0]}{cells[1]}")
