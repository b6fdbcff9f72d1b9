"""Prioritized n-step replay: dqnfast against cpprb and torchrl.

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
minutes to fill: only dqnfast runs there.

torchrl (the ``bench`` extra; its compiled segment trees load against torch 2.14, not
2.13): its ``PrioritizedReplayBuffer`` over a ``LazyTensorStorage`` with its
``MultiStepTransform``, the configuration its docs give for n-step replay. It stores
``observation`` and ``("next", "observation")`` whole, 56 KB per transition, so it too
runs at 100k only. Its first batch is checked against the stream (obs, 3-step return,
next obs) before it is timed.
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


class TorchrlPER:
    FILL_CHUNK = 1_000  # transitions per extend call

    def __init__(self, capacity):
        from torchrl.data import LazyTensorStorage, PrioritizedReplayBuffer
        from torchrl.envs.transforms import MultiStepTransform
        self.rb = PrioritizedReplayBuffer(alpha=ALPHA, beta=BETA,
                                          storage=LazyTensorStorage(capacity),
                                          transform=MultiStepTransform(N_STEP, GAMMA))
        self.capacity = capacity
        chunk = []
        for transition in stream(capacity):
            chunk.append(transition)
            if len(chunk) == self.FILL_CHUNK:
                self.rb.extend(self.tensordict(chunk))
                chunk = []
        self.rb.extend(self.tensordict(chunk))
        # The transform holds back the last N_STEP transitions of the stream's open
        # episode, so storage index i is the stream's transition i (no wrap-around).
        assert len(self.rb) == capacity and self.rb.write_count == capacity
        self.check_first_batch()

    @staticmethod
    def tensordict(transitions):
        from tensordict import TensorDict

        def column(name):
            return torch.from_numpy(np.concatenate([getattr(t, name) for t in transitions]))

        terminated, truncated = column("terminated")[:, None], column("truncated")[:, None]
        return TensorDict({"observation": column("obs"), "action": column("action"),
                           "next": {"observation": column("next_obs"),
                                    "reward": column("reward")[:, None],
                                    "terminated": terminated, "truncated": truncated,
                                    "done": terminated | truncated}},
                          batch_size=[len(transitions)])

    def check_first_batch(self):
        """The sampled obs, n-step return and next obs are the stream's, index by index."""
        batch, info = self.rb.sample(32, return_info=True)
        wanted = {int(i): row for row, i in enumerate(info["index"])}
        window = []  # the stream's last N_STEP transitions
        for position, t in enumerate(stream(self.capacity)):
            window = window[-(N_STEP - 1):] + [t]
            start = position - (N_STEP - 1)
            if start in wanted:
                row = wanted.pop(start)
                steps = window
                k = next((k + 1 for k, s in enumerate(steps) if s.terminated[0] or s.truncated[0]),
                         N_STEP)
                n_step_return = sum(GAMMA ** i * float(s.reward[0]) for i, s in enumerate(steps[:k]))
                assert np.array_equal(batch["observation"][row].numpy(), steps[0].obs[0])
                assert np.array_equal(batch["next", "observation"][row].numpy(), steps[k - 1].next_obs[0])
                assert abs(float(batch["next", "reward"][row]) - n_step_return) < 1e-4
            if not wanted:
                return

    def step(self, batch_size, priorities):
        batch, info = self.rb.sample(batch_size, return_info=True)
        self.rb.update_priority(info["index"], priorities)
        return batch["observation"].numpy(), batch["next", "observation"].numpy()

    def bytes_per_transition(self):
        storage = self.rb.storage._storage  # a TensorDict of the stored columns
        leaves = storage.values(include_nested=True, leaves_only=True)
        return sum(leaf.numel() * leaf.element_size() for leaf in leaves) / self.capacity


IMPLEMENTATIONS = {"dqnfast": DqnfastPER, "cpprb": CpprbPER, "torchrl": TorchrlPER}
ONLY_AT_100K = {"cpprb", "torchrl"}  # see the module docstring


PARAMS = [(name, capacity) for capacity in (100_000, 1_000_000) for name in IMPLEMENTATIONS]


@pytest.fixture(scope="module", params=PARAMS, ids=[f"{n}-{c // 1000}k" for n, c in PARAMS])
def filled_per(request):
    name, capacity = request.param
    if capacity > 100_000 and name in ONLY_AT_100K:
        pytest.skip(f"{name} at {capacity:,} transitions needs more memory than this machine "
                    "has (see the module docstring)")
    if name == "torchrl":
        pytest.importorskip("torchrl", reason="torchrl is in the bench extra: "
                            "pip install --no-build-isolation -e '.[bench]'")
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
