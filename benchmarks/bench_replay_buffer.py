"""Replay-buffer benchmarks: dqnfast against the textbook buffer, SB3 and cpprb.

    python -m pytest benchmarks --benchmark-only          # timings
    python -m pytest benchmarks --benchmark-disable       # each once, as a smoke test

Each group compares the implementations on one task: "sample-atari" (batch 32),
"sample-atari-1024", "add-atari" (one step of 8 envs) and "sample-cartpole"
(batch 128). Every buffer is filled, outside the timings, with the same synthetic
transitions until it is full, so sampling and adding run in the steady state.
Each result's extra_info holds ``bytes_per_transition`` (storage held right after
filling / capacity) and ``stored_transitions`` (how many of them can be sampled).
"""
import functools
import gc
import itertools
import sys
from dataclasses import dataclass
from typing import NamedTuple

import cpprb
import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer

import dqnfast
from textbook import Experience, ExperienceBuffer

NUM_ACTIONS = 6
FRAME_POOL_SIZE = 512
FILL_SEED, ADD_SEED = 0, 1
ADD_STEPS_PER_ENV = 32  # the add benchmark cycles through this many prepared steps


@dataclass(frozen=True)
class Workload:
    obs_shape: tuple
    obs_dtype: type
    frame_stack: int
    num_envs: int
    capacity: int  # transitions, all envs together
    mean_episode_length: int

    @property
    def frame_shape(self) -> tuple:
        return self.obs_shape[1:] if self.frame_stack > 1 else self.obs_shape


ATARI = Workload(obs_shape=(4, 84, 84), obs_dtype=np.uint8, frame_stack=4, num_envs=8,
                 capacity=20_000, mean_episode_length=250)
CARTPOLE = Workload(obs_shape=(4,), obs_dtype=np.float32, frame_stack=1, num_envs=8,
                    capacity=10_000, mean_episode_length=100)


# -- synthetic transitions -----------------------------------------------------------------

class Transition(NamedTuple):
    """Arrays with a leading env dimension, as a vectorized environment gives them."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


@functools.lru_cache(maxsize=None)
def frame_pool(workload: Workload) -> np.ndarray:
    """Random frames to draw from: cheaper than making a new random frame each step."""
    rng = np.random.default_rng(12345)
    shape = (FRAME_POOL_SIZE, *workload.frame_shape)
    if np.issubdtype(workload.obs_dtype, np.integer):
        return rng.integers(0, 256, shape, dtype=workload.obs_dtype)
    return rng.standard_normal(shape, dtype=workload.obs_dtype)


def one_env_transitions(workload: Workload, seed, num_steps: int):
    """One synthetic environment's (obs, action, reward, next_obs, terminated, truncated).

    Each step shifts one random frame into the stack, so next_obs[:-1] == obs[1:];
    a reset stack repeats its first frame, as gymnasium's FrameStackObservation does.
    Episodes end at random, and the last step is truncated so that streams can be
    chained one after another or cycled without a stack spanning two episodes.
    """
    frames = frame_pool(workload)
    rng = np.random.default_rng(seed)

    def reset_stack():
        return np.repeat(frames[rng.integers(len(frames))][None], workload.frame_stack, axis=0)

    stack = reset_stack()
    for step in range(num_steps):
        next_stack = np.concatenate([stack[1:], frames[rng.integers(len(frames))][None]])
        last_step = step == num_steps - 1
        episode_ends = last_step or rng.random() < 1 / workload.mean_episode_length
        terminated = episode_ends and not last_step and rng.random() < 0.5
        yield (stack.reshape(workload.obs_shape), int(rng.integers(NUM_ACTIONS)),
               float(rng.standard_normal()), next_stack.reshape(workload.obs_shape),
               terminated, episode_ends and not terminated)
        stack = reset_stack() if episode_ends else next_stack


def stack_envs(per_env) -> Transition:
    obs, action, reward, next_obs, terminated, truncated = zip(*per_env)
    return Transition(np.stack(obs), np.array(action, np.int64), np.array(reward, np.float32),
                      np.stack(next_obs), np.array(terminated), np.array(truncated))


def synthetic_transitions(workload: Workload, seed: int, steps_per_env: int, all_envs: bool):
    """The workload's envs' transitions: all envs stepped together (leading dim num_envs),
    or the same transitions one env after another (leading dim 1)."""
    streams = [one_env_transitions(workload, env_seed, steps_per_env)
               for env_seed in np.random.SeedSequence(seed).spawn(workload.num_envs)]
    if all_envs:
        return map(stack_envs, zip(*streams))
    return (stack_envs([t]) for t in itertools.chain.from_iterable(streams))


# -- the buffers, behind one interface -------------------------------------------------------

class BufferAdapter:
    """One library's replay buffer behind a common interface.

    ``prepare`` turns a Transition into the arguments the library's add takes, and
    stands for the environment's work: it is kept out of the timings. ``add`` stores
    them, ``sample`` returns the library's own batch and ``unpack`` reads that batch
    as numpy (obs, next_obs, done) for the checks.
    """

    takes_all_envs = True  # False: add takes one env's stream, one env after another

    def prepare(self, transition: Transition):
        return transition

    def add(self, prepared) -> None:
        raise NotImplementedError

    def sample(self, batch_size: int):
        raise NotImplementedError

    def unpack(self, batch):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def bytes_per_transition(self) -> float:
        raise NotImplementedError


class DqnfastAdapter(BufferAdapter):
    def __init__(self, workload: Workload):
        self.rb = dqnfast.ReplayBuffer(
            workload.capacity, workload.obs_shape, num_envs=workload.num_envs,
            frame_stack=workload.frame_stack,
            obs_dtype=torch.from_numpy(np.empty(0, workload.obs_dtype)).dtype, seed=0)

    def add(self, prepared: Transition) -> None:
        self.rb.add(*prepared)

    def sample(self, batch_size):
        return self.rb.sample(batch_size)

    def unpack(self, batch):
        return batch.obs.numpy(), batch.next_obs.numpy(), batch.terminated.numpy()

    def __len__(self):
        return len(self.rb)

    def bytes_per_transition(self):
        return self.rb.nbytes / self.rb.capacity


class TextbookAdapter(BufferAdapter):
    """Fed as the chapter's agent loop feeds it, one env after another within a step
    (it stores whole transitions, so envs may interleave)."""

    def __init__(self, workload: Workload):
        self.buffer = ExperienceBuffer(workload.capacity)
        self.capacity = workload.capacity
        # Per env, the last new_state unless its episode ended: the agent loop's state.
        self.current_state = [None] * workload.num_envs

    def prepare(self, transition):
        experiences = []
        for env, per_env in enumerate(zip(*transition)):
            obs, action, reward, next_obs, terminated, truncated = per_env
            # The environment makes one new array per step (a copy here, as the chapter's
            # wrappers make one): this step's new_state, and the next step's state.
            state = self.current_state[env]
            if state is None:
                state = obs.copy()
            new_state = next_obs.copy()
            done = bool(terminated or truncated)  # the chapter's gym reports time limits as done
            experiences.append(Experience(state, int(action), float(reward), done, new_state))
            self.current_state[env] = None if done else new_state
        return experiences

    def add(self, prepared):
        for experience in prepared:
            self.buffer.append(experience)

    def sample(self, batch_size):
        return self.buffer.sample(batch_size)

    def unpack(self, batch):
        states, _, _, dones, new_states = batch
        return states, new_states, dones.astype(bool)

    def __len__(self):
        return len(self.buffer)

    def bytes_per_transition(self):
        # Each array once (consecutive experiences share one), with its header; plus
        # each experience's tuple, reward float and deque slot. Small ints and bools
        # are cached by Python and cost nothing.
        arrays = {id(array): sys.getsizeof(array) for experience in self.buffer.buffer
                  for array in (experience.state, experience.new_state)}
        experiences = sum(sys.getsizeof(experience) + sys.getsizeof(experience.reward) + 8
                          for experience in self.buffer.buffer)
        return (sum(arrays.values()) + experiences) / self.capacity


class SB3Adapter(BufferAdapter):
    def __init__(self, workload: Workload, optimize_memory_usage: bool):
        if np.issubdtype(workload.obs_dtype, np.integer):
            observation_space = gymnasium.spaces.Box(0, 255, workload.obs_shape, workload.obs_dtype)
        else:
            observation_space = gymnasium.spaces.Box(-np.inf, np.inf, workload.obs_shape,
                                                     workload.obs_dtype)
        # SB3 refuses optimize_memory_usage with handle_timeout_termination (its issue #934).
        self.rb = SB3ReplayBuffer(
            workload.capacity, observation_space, gymnasium.spaces.Discrete(NUM_ACTIONS),
            device="cpu", n_envs=workload.num_envs, optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=not optimize_memory_usage)

    def prepare(self, transition):
        # SB3's VecEnv convention: done = terminated or truncated, with the truncation
        # in the infos.
        infos = [{"TimeLimit.truncated": bool(truncated and not terminated)}
                 for terminated, truncated in zip(transition.terminated, transition.truncated)]
        return (transition.obs, transition.next_obs, transition.action, transition.reward,
                transition.terminated | transition.truncated, infos)

    def add(self, prepared):
        self.rb.add(*prepared)

    def sample(self, batch_size):
        return self.rb.sample(batch_size)

    def unpack(self, batch):
        return (batch.observations.numpy(), batch.next_observations.numpy(),
                batch.dones.numpy().ravel() > 0)

    def __len__(self):
        return (self.rb.buffer_size if self.rb.full else self.rb.pos) * self.rb.n_envs

    def bytes_per_transition(self):
        held = sum(value.nbytes for value in vars(self.rb).values()
                   if isinstance(value, np.ndarray))
        return held / (self.rb.buffer_size * self.rb.n_envs)


class CpprbAdapter(BufferAdapter):
    """cpprb, plain or with its memory options.

    ``next_of`` (next_obs shares obs's memory) and ``stack_compress`` (overlapping
    stacks share frames) assume consecutive adds are consecutive steps of one episode,
    so those buffers take one env's stream after another. ``stack_compress`` needs the
    stack dimension last: with the frames first it silently returns wrong stacks, so
    that variant is fed (84, 84, 4) stacks and samples them in that layout.
    """

    def __init__(self, workload: Workload, next_of: bool = False, stack_compress: bool = False):
        self.capacity = workload.capacity
        self.stack_last = stack_compress
        obs_shape = workload.obs_shape
        if stack_compress:
            obs_shape = (*workload.frame_shape, workload.frame_stack)
        env_dict = {"obs": {"shape": obs_shape, "dtype": workload.obs_dtype},
                    "act": {"dtype": np.int64}, "rew": {"dtype": np.float32},
                    "done": {"dtype": np.float32}}
        if not next_of:
            env_dict["next_obs"] = env_dict["obs"]
        self.rb = cpprb.ReplayBuffer(workload.capacity, env_dict,
                                     next_of="obs" if next_of else None,
                                     stack_compress="obs" if stack_compress else None)
        self.takes_all_envs = not next_of

    def prepare(self, transition):
        obs, next_obs = transition.obs, transition.next_obs
        if self.stack_last:  # an environment that stacks frames last
            obs = np.ascontiguousarray(np.moveaxis(obs, 1, -1))
            next_obs = np.ascontiguousarray(np.moveaxis(next_obs, 1, -1))
        arrays = dict(obs=obs, act=transition.action, rew=transition.reward,
                      next_obs=next_obs, done=transition.terminated)
        # With one env's stream, cpprb must hear of every episode end, time limits too.
        episode_ends = not self.takes_all_envs and bool(transition.terminated[0]
                                                         or transition.truncated[0])
        return arrays, episode_ends

    def add(self, prepared):
        arrays, episode_ends = prepared
        self.rb.add(**arrays)
        if episode_ends:
            self.rb.on_episode_end()

    def sample(self, batch_size):
        return self.rb.sample(batch_size)

    def unpack(self, batch):
        obs, next_obs = batch["obs"], batch["next_obs"]
        if self.stack_last:
            obs, next_obs = np.moveaxis(obs, -1, 1), np.moveaxis(next_obs, -1, 1)
        return obs, next_obs, batch["done"].ravel() > 0

    def __len__(self):
        return self.rb.get_stored_size()

    def bytes_per_transition(self):
        return cpprb_bytes_per_transition(self.rb, self.capacity)


def cpprb_bytes_per_transition(rb, capacity: int) -> float:
    """cpprb keeps its arrays in Cython attributes that Python cannot name; the garbage
    collector still lists them. stack_compress's obs is a strided view, so count the
    arrays that own the memory."""
    owners = {}
    for holder in gc.get_referents(rb):
        for value in holder.values() if isinstance(holder, dict) else [holder]:
            if isinstance(value, np.ndarray):
                owner = memory_owner(value)
                owners[id(owner)] = owner.nbytes
    return sum(owners.values()) / capacity


def memory_owner(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory behind a view, through as_strided's wrapper objects."""
    owner = array
    while getattr(array, "base", None) is not None:
        array = array.base
        if isinstance(array, np.ndarray):
            owner = array
    return owner


IMPLEMENTATIONS = {
    "dqnfast": DqnfastAdapter,
    "textbook": TextbookAdapter,
    "sb3": functools.partial(SB3Adapter, optimize_memory_usage=False),
    "sb3-optimize_memory_usage": functools.partial(SB3Adapter, optimize_memory_usage=True),
    "cpprb": CpprbAdapter,
    "cpprb-next_of": functools.partial(CpprbAdapter, next_of=True),
    "cpprb-next_of-stack_compress": functools.partial(CpprbAdapter, next_of=True,
                                                      stack_compress=True),
}
FRAME_STACK_ONLY = {"cpprb-next_of-stack_compress"}


# -- fixtures ------------------------------------------------------------------------------

@dataclass
class FilledBuffer:
    adapter: BufferAdapter
    workload: Workload
    extra_info: dict  # measured right after filling


def fill(name: str, workload: Workload) -> FilledBuffer:
    np.random.seed(0)  # the textbook and SB3 sample with numpy's global generator
    adapter = IMPLEMENTATIONS[name](workload)
    steps_per_env = workload.capacity // workload.num_envs
    for transition in synthetic_transitions(workload, FILL_SEED, steps_per_env,
                                            adapter.takes_all_envs):
        adapter.add(adapter.prepare(transition))
    extra_info = {"bytes_per_transition": round(adapter.bytes_per_transition(), 1),
                  "stored_transitions": len(adapter)}
    return FilledBuffer(adapter, workload, extra_info)


# Module scope: pytest runs all tests of one implementation before filling the next,
# so only one large buffer is alive at a time, and each is filled once.
@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def filled_atari(request):
    return fill(request.param, ATARI)


@pytest.fixture(scope="module",
                params=[name for name in IMPLEMENTATIONS if name not in FRAME_STACK_ONLY])
def filled_cartpole(request):
    return fill(request.param, CARTPOLE)


# -- benchmarks ----------------------------------------------------------------------------

def check_batch(filled: FilledBuffer, batch, batch_size: int) -> None:
    """Right shapes, and stacks that shift by one frame. Transitions flagged done are
    skipped: there SB3's optimize_memory_usage gives the next episode's first obs."""
    obs, next_obs, done = filled.adapter.unpack(batch)
    assert obs.shape == next_obs.shape == (batch_size, *filled.workload.obs_shape)
    if filled.workload.frame_stack > 1:
        np.testing.assert_array_equal(next_obs[~done, :-1], obs[~done, 1:])


def benchmark_sample(benchmark, filled: FilledBuffer, batch_size: int, **pedantic) -> None:
    benchmark.extra_info.update(filled.extra_info)
    if pedantic:
        batch = benchmark.pedantic(filled.adapter.sample, args=(batch_size,), **pedantic)
    else:
        batch = benchmark(filled.adapter.sample, batch_size)
    check_batch(filled, batch, batch_size)


@pytest.mark.benchmark(group="sample-atari")
def test_sample_atari(benchmark, filled_atari):
    benchmark_sample(benchmark, filled_atari, 32)


@pytest.mark.benchmark(group="sample-atari-1024")
def test_sample_atari_1024(benchmark, filled_atari):
    # Milliseconds a call: a fixed, smaller number of rounds is enough.
    benchmark_sample(benchmark, filled_atari, 1024, rounds=30, warmup_rounds=2)


# Defined after the sampling benchmarks, so it runs after them on each buffer: it
# overwrites the oldest transitions with a short cycle of repeated ones.
@pytest.mark.benchmark(group="add-atari")
def test_add_atari(benchmark, filled_atari):
    """Adds one step of the 8 envs (8 transitions) to a full buffer."""
    adapter, num_envs = filled_atari.adapter, ATARI.num_envs
    prepared = [adapter.prepare(t) for t in synthetic_transitions(
        ATARI, ADD_SEED, ADD_STEPS_PER_ENV, adapter.takes_all_envs)]
    # One call adds 8 transitions: one vector step, or 8 steps of one env's stream.
    per_call = 1 if adapter.takes_all_envs else num_envs
    calls = itertools.cycle([prepared[i:i + per_call] for i in range(0, len(prepared), per_call)])

    def add_one_step_of_all_envs():
        for arguments in next(calls):
            adapter.add(arguments)

    benchmark.extra_info.update(filled_atari.extra_info)
    benchmark(add_one_step_of_all_envs)


@pytest.mark.benchmark(group="sample-cartpole")
def test_sample_cartpole(benchmark, filled_cartpole):
    benchmark_sample(benchmark, filled_cartpole, 128)
