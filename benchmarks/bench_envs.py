"""Environment throughput: env steps per second of each ``dqnfast.envs`` mode.

    python -m pytest benchmarks/bench_envs.py --benchmark-only

Group "env-steps": 8 environments, uniformly random actions (drawn beforehand),
``env.step`` called ``STEPS`` times per round, everything the interface does
included (episode bookkeeping, reward clipping, frame stacks). Each result's
extra_info holds ``env_steps_per_round`` and ``env_steps_per_s`` (from the median
round): one env step is one agent step of one env, i.e. ``frame_skip`` (4) emulator
frames for Atari. The Atari rows answer which preprocessing mode is the faster
(``dqnfast/envs/atari.py`` takes it as the default).
"""
import gc

import numpy as np
import pytest

from dqnfast import envs
from dqnfast.extras import importable

NUM_ENVS = 8
ROUNDS = 5

MODES = [
    # (id, env_id, options, steps per round)
    ("atari-envpool-native", "Pong-v5", {"backend": "envpool", "preprocess": "native"}, 250),
    ("atari-envpool-dqnfast", "Pong-v5", {"backend": "envpool", "preprocess": "dqnfast"}, 250),
    ("atari-ale-native", "Pong-v5", {"backend": "ale", "preprocess": "native"}, 250),
    ("atari-ale-dqnfast", "Pong-v5", {"backend": "ale", "preprocess": "dqnfast"}, 250),
    ("cartpole", "CartPole-v1", {}, 500),
    ("frozenlake", "FrozenLake-v1", {}, 500),
    ("cartpole-pixels", "CartPole-pixels", {}, 40),
]
NEEDS = {"envpool": "envpool", "ale": "ale_py"}


@pytest.mark.benchmark(group="env-steps")
@pytest.mark.parametrize("env_id, options, steps", [m[1:] for m in MODES], ids=[m[0] for m in MODES])
def test_env_steps(benchmark, env_id, options, steps):
    backend = options.get("backend")
    if backend is not None and not importable(NEEDS[backend]):
        pytest.skip(f"{backend} is not installed")
    if env_id == "CartPole-pixels" and not importable("pygame"):
        pytest.skip("CartPole-pixels renders with pygame")
    with envs.make(env_id, num_envs=NUM_ENVS, seed=0, **options) as env:
        rng = np.random.default_rng(0)
        actions = rng.integers(0, env.num_actions, (steps, NUM_ENVS))
        env.reset()
        for a in actions[: min(steps, 50)]:  # warm up: threads started, caches filled
            env.step(a)

        def play():
            for a in actions:
                env.step(a)

        benchmark.pedantic(play, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    env_steps = steps * NUM_ENVS
    benchmark.extra_info["env_steps_per_round"] = env_steps
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["env_steps_per_s"] = round(env_steps / benchmark.stats.stats.median)


# -- dqnfast's Atari env beside the backend it drives ------------------------------------------

RAW_ENVS = (8, 32, 64)
RAW_ENV_STEPS_PER_ROUND = 4_000
RAW_RATES = {}  # (backend, num_envs) -> the backend's own env steps/s, for the ratio


# The two drivers of one group run one after the other (the machine's speed drifts).
@pytest.mark.parametrize("driver", ["backend", "dqnfast"])
@pytest.mark.parametrize("backend", ["ale", "envpool"])
@pytest.mark.parametrize("num_envs", RAW_ENVS)
def test_atari_env_against_its_backend(benchmark, driver, backend, num_envs):
    """Group "atari-vs-backend-<backend>-<envs>": the same Pong envs, options and
    threads (one per usable core, at most one per env), stepped through the backend's
    own vector env alone ("backend") and through dqnfast's (its episode books, reward
    clipping and, for ALE, frame stacks). extra_info: ``env_steps_per_s``, ``threads``
    and, for dqnfast, ``backend_over_dqnfast`` (the backend's rate over dqnfast's, in
    this run; at most 1.25 is the aim)."""
    if not importable(NEEDS[backend]):
        pytest.skip(f"{backend} is not installed")
    benchmark.group = f"atari-vs-backend-{backend}-{num_envs}"
    steps = max(RAW_ENV_STEPS_PER_ROUND // num_envs, 20)
    with envs.make("Pong-v5", num_envs=num_envs, seed=0, backend=backend) as env:
        rng = np.random.default_rng(0)
        actions = rng.integers(0, env.num_actions, (steps, num_envs)).astype(np.int32)
        env.reset()
        step = env.step if driver == "dqnfast" else env.backend_env.step
        for a in actions[:10]:  # warm up: threads started, caches filled
            step(a)

        def play():
            for a in actions:
                step(a)

        benchmark.pedantic(play, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        threads = envs.env_threads(0, num_envs)
    gc.collect()  # the backend's threads end with it, not during the next group
    benchmark.extra_info.update(threads=threads, env_steps_per_round=steps * num_envs)
    if benchmark.stats is None:  # --benchmark-disable
        return
    rate = steps * num_envs / benchmark.stats.stats.median
    benchmark.extra_info["env_steps_per_s"] = round(rate)
    if driver == "backend":
        RAW_RATES[backend, num_envs] = rate
    elif (backend, num_envs) in RAW_RATES:
        benchmark.extra_info["backend_over_dqnfast"] = round(RAW_RATES[backend, num_envs] / rate, 3)
