"""Prioritized n-step replay: dqnfast against cpprb.

    python -m pytest benchmarks/bench_prioritized_replay.py --benchmark-only

One learner step per round: sample a batch of 32 or 256 (4, 84, 84) uint8 stacks with
3-step returns by priority (alpha 0.6, beta 0.4), then set the batch's priorities.
Groups "per-step-32-100k", "per-step-256-100k", and the same at 1M. Each buffer is
filled, outside the timings, with one environment's synthetic stream (mean episode
250 steps) until full. One torch thread, as cpprb runs on one (and on a shared
2-core machine a second thread mostly waits for the busy core). extra_info holds ``bytes_per_transition`` (storage held
after filling / capacity).

cpprb in its smallest faithful configuration: its ``PrioritizedReplayBuffer`` with
``Nstep`` stores ``obs`` and ``next_obs`` with ``stack_compress`` (stacks last, as
``stack_compress`` needs; its ``next_of`` drops ``next_obs`` from the samples under
``Nstep``). At 1M it would need about 14 GB on a 24 GB machine shared with others, and
minutes to fill: only dqnfast runs there. torchrl is not compared: the
``PrioritizedReplayBuffer`` of torchrl 0.14.1 and 0.13.3 needs its compiled segment
trees, whose extension fails to load against torch 2.13.0+cpu (undefined symbols).
"""
import gc

import cpprb
import numpy as np
import pytest
import torch

import dqnfast
from bench_replay_buffer import Workload, cpprb_bytes_per_transition, synthetic_transitions

N_STEP, GAMMA, ALPHA, BETA = 3, 0.99, 0.6, 0.4
FILL_SEED = 0


def workload(capacity: int) -> Workload:
    return Workload(obs_shape=(4, 84, 84), obs_dtype=np.uint8, frame_stack=4, num_envs=1,
                    capacity=capacity, mean_episode_length=250)


def stream(capacity: int):
    """One env's transitions, enough to fill the buffer (leading dim 1)."""
    return synthetic_transitions(workload(capacity), FILL_SEED, capacity + N_STEP, all_envs=False)


class DqnfastPER:
    def __init__(self, capacity):
        self.rb = dqnfast.ReplayBuffer(capacity, (4, 84, 84), frame_stack=4, n_step=N_STEP,
                                       gamma=GAMMA, prioritized=True, alpha=ALPHA, beta=BETA,
                                       seed=0)
        for transition in stream(capacity):
            self.rb.add(*transition)

    def step(self, batch_size, priorities):
        batch = self.rb.sample(batch_size)
        self.rb.update_priorities(batch.index, priorities)
        return batch.obs.numpy(), batch.next_obs.numpy()

    def bytes_per_transition(self):
        return self.rb.nbytes / self.rb.capacity


class CpprbPER:
    def __init__(self, capacity):
        stack = {"shape": (84, 84, 4), "dtype": np.uint8}
        self.rb = cpprb.PrioritizedReplayBuffer(
            capacity, {"obs": stack, "next_obs": stack, "act": {"dtype": np.int64},
                       "rew": {"dtype": np.float32}, "done": {"dtype": np.float32}},
            alpha=ALPHA, Nstep={"size": N_STEP, "gamma": GAMMA, "rew": "rew", "next": "next_obs"},
            stack_compress=["obs", "next_obs"])
        self.capacity = capacity
        for t in stream(capacity):
            self.rb.add(obs=np.moveaxis(t.obs[0], 0, -1), next_obs=np.moveaxis(t.next_obs[0], 0, -1),
                        act=t.action, rew=t.reward, done=t.terminated.astype(np.float32))
            if t.terminated[0] or t.truncated[0]:
                self.rb.on_episode_end()

    def step(self, batch_size, priorities):
        batch = self.rb.sample(batch_size, beta=BETA)
        self.rb.update_priorities(batch["indexes"], priorities)
        return np.moveaxis(batch["obs"], -1, 1), np.moveaxis(batch["next_obs"], -1, 1)

    def bytes_per_transition(self):
        return cpprb_bytes_per_transition(self.rb, self.capacity)


IMPLEMENTATIONS = {"dqnfast": DqnfastPER, "cpprb": CpprbPER}
ONLY_AT_100K = {"cpprb"}  # see the module docstring


PARAMS = [(name, capacity) for capacity in (100_000, 1_000_000) for name in IMPLEMENTATIONS]


@pytest.fixture(scope="module", params=PARAMS, ids=[f"{n}-{c // 1000}k" for n, c in PARAMS])
def filled_per(request):
    name, capacity = request.param
    if capacity > 100_000 and name in ONLY_AT_100K:
        pytest.skip(f"{name} at {capacity:,} transitions needs more memory than this machine "
                    "has (see the module docstring)")
    gc.collect()
    return name, capacity, IMPLEMENTATIONS[name](capacity)


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def benchmark_step(benchmark, filled_per, batch_size):
    name, capacity, adapter = filled_per
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.0, 2.0, batch_size).astype(np.float32)
    priorities = raw if name == "cpprb" else torch.from_numpy(raw)
    benchmark.extra_info.update(bytes_per_transition=round(adapter.bytes_per_transition(), 1),
                                capacity=capacity)
    obs, next_obs = benchmark(adapter.step, batch_size, priorities)
    assert obs.shape == next_obs.shape == (batch_size, 4, 84, 84)


@pytest.mark.benchmark(group="per-step")
@pytest.mark.parametrize("batch_size", [32, 256])
def test_prioritized_step(benchmark, filled_per, batch_size):
    benchmark.group = f"per-step-{batch_size}-{filled_per[1] // 1000}k"
    benchmark_step(benchmark, filled_per, batch_size)
