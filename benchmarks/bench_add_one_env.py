"""The fixed cost of one add call: one Atari environment's step into a full buffer, and
one vector step of the Atari presets' 10 envs.

    python -m pytest benchmarks/bench_add_one_env.py --benchmark-only

A one-env loop (the book chapter's, CleanRL's) calls ``add`` once per env step, so
the per-call cost, not the bytes, decides whether the buffer shows in its profile.
Group "add-one-env": (4, 84, 84) uint8 stacks of a synthetic stream (frames shift as
stacks do, episodes of about 250 steps), a buffer of 10,000 transitions filled once
before timing (the pages touched), then one add per round. dqnfast plain (n = 1,
uniform) and with 3-step returns and priorities; Stable-Baselines3's ``ReplayBuffer``
(``n_envs=1``), plain and with ``optimize_memory_usage``.
"""
import itertools

import numpy as np
import pytest

import dqnfast

CAPACITY, STEPS = 10_000, 2_000


def stream(rng, steps):
    """(obs, action, reward, next_obs, terminated, truncated) of one env, leading dim 1."""
    stack = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    transitions = []
    for _ in range(steps):
        next_obs = np.concatenate([stack[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), np.uint8)], 1)
        terminated = np.array([rng.random() < 1 / 250])
        transitions.append((stack, rng.integers(0, 6, 1), rng.random(1).astype(np.float32),
                            next_obs, terminated, np.zeros(1, bool)))
        stack = (rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8) if terminated[0]
                 else next_obs)
    return transitions


def dqnfast_add(**options):
    rb = dqnfast.ReplayBuffer(CAPACITY, (4, 84, 84), frame_stack=4, seed=0, **options)
    return lambda t: rb.add(*t)


def sb3_add(optimize_memory_usage):
    gymnasium = pytest.importorskip("gymnasium")
    buffers = pytest.importorskip("stable_baselines3.common.buffers")
    rb = buffers.ReplayBuffer(
        CAPACITY, gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8), gymnasium.spaces.Discrete(6),
        device="cpu", n_envs=1, optimize_memory_usage=optimize_memory_usage,
        handle_timeout_termination=not optimize_memory_usage)
    info = [{"TimeLimit.truncated": False}]
    return lambda t: rb.add(t[0], t[3], t[1], t[2], t[4] | t[5], info)


ADDERS = {
    "dqnfast": lambda: dqnfast_add(),
    "dqnfast n=3 prioritized": lambda: dqnfast_add(n_step=3, prioritized=True),
    "SB3": lambda: sb3_add(False),
    "SB3 optimize_memory_usage": lambda: sb3_add(True),
}


@pytest.mark.parametrize("name", list(ADDERS))
def test_add_one_env(benchmark, name):
    benchmark.group = "add-one-env"
    add = ADDERS[name]()
    transitions = stream(np.random.default_rng(0), STEPS)
    for _, transition in zip(range(CAPACITY + 1), itertools.cycle(transitions)):
        add(transition)  # full, every page touched
    upcoming = itertools.cycle(transitions)
    benchmark(lambda: add(next(upcoming)))


@pytest.mark.parametrize("num_actions", [None, 6], ids=["unbounded", "num_actions"])
def test_add_ten_envs(benchmark, num_actions):
    """Group "add-ten-envs": one vector step of the Atari presets' 10 envs on a CPU
    (3-step returns, priorities, a 100,000-transition buffer filled once), with and
    without the action bound the training loop passes."""
    benchmark.group = "add-ten-envs"
    rb = dqnfast.ReplayBuffer(100_000, (4, 84, 84), num_envs=10, frame_stack=4, seed=0, n_step=3,
                              prioritized=True, alpha=0.5, num_actions=num_actions)
    rng = np.random.default_rng(0)
    steps = [tuple(np.concatenate(column) for column in zip(*columns))
             for columns in zip(*(stream(rng, 200) for _ in range(10)))]
    cycle = itertools.cycle(steps)
    for _ in range(CAPACITY + 1):
        rb.add(*next(cycle))  # every env's ring filled and wrapped
    benchmark(lambda: rb.add(*next(cycle)))
