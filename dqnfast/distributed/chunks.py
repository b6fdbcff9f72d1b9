"""Experience chunks: what an actor sends the learner, each frame once.

An actor steps ``num_envs`` environments for a while and sends what happened as one
``Chunk`` of numpy arrays. Per environment the frames are one run, in order: the
stack the environment's observation held when the chunk began, then one new frame
per transition (the newest frame of its ``next_obs``), and the whole first stack of a
new episode where one began. Transition ``i`` names the position ``obs_pos[i]`` of
its ``obs``'s first frame in ``frames``; its ``obs`` is ``frames[p : p+k]`` and its
``next_obs`` ``frames[p+1 : p+k+1]`` (``k = frame_stack``; for vector states ``k``
is 1 and a "frame" is the whole observation). So an Atari transition costs one 84x84
frame (7 KB) instead of two stacks (56 KB), and ``add_chunk`` hands the replay buffer
views into the arrays Ray delivered: nothing is copied before the buffer's own copy.
"""
from dataclasses import dataclass
from typing import List

import numpy as np

# numpy dtypes of the per-transition fields
_FIELDS = {"env": np.int64, "obs_pos": np.int64, "action": np.int64, "reward": np.float32,
           "terminated": np.bool_, "truncated": np.bool_}


@dataclass
class Chunk:
    frames: np.ndarray  # (F, *frame_shape), every environment's frames, one run each
    env: np.ndarray  # (T,) int64: the actor's environment of each transition
    obs_pos: np.ndarray  # (T,) int64: first frame of each transition's obs in frames
    action: np.ndarray  # (T,) int64
    reward: np.ndarray  # (T,) float32
    terminated: np.ndarray  # (T,) bool
    truncated: np.ndarray  # (T,) bool
    priority: np.ndarray  # (T,) float32, the actor's |n-step TD error| (empty: none)
    env_steps: int  # env steps taken, reset steps included (the learner's step count)
    episode_returns: np.ndarray  # (E,) float64: games that ended in this chunk
    episode_lengths: np.ndarray  # (E,) int64

    def __len__(self) -> int:
        return len(self.env)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays sent (what one transition costs: nbytes / len)."""
        return sum(getattr(self, name).nbytes for name in (
            "frames", "env", "obs_pos", "action", "reward", "terminated", "truncated",
            "priority", "episode_returns", "episode_lengths"))


class ChunkBuilder:
    """Collects the steps of ``num_envs`` environments into chunks (the actor's side).

    ``start(obs)`` once with the first observations; then per vector step
    ``step(actions, reward, terminated, truncated, next_obs, reset_step)`` with what
    ``VectorEnv.step`` returned (``reset_step`` is ``info["reset_step"]``: such a step
    only began a new episode and is no transition); ``finish()`` returns the chunk and
    begins the next one where this one ended."""

    def __init__(self, num_envs: int, frame_stack: int):
        self.num_envs, self.frame_stack = num_envs, frame_stack

    def start(self, obs: np.ndarray) -> None:
        self._obs = obs
        self._begin()

    def _begin(self) -> None:
        # Per environment: its frames, and where its current obs stack starts in them.
        self._frames: List[list] = [list(self._stack(o)) for o in self._obs]
        self._obs_start = [0] * self.num_envs
        self._transitions = {name: [] for name in _FIELDS}
        self._returns, self._lengths, self._env_steps = [], [], 0

    def _stack(self, obs: np.ndarray) -> np.ndarray:
        return obs if self.frame_stack > 1 else obs[None]

    def step(self, actions, reward, terminated, truncated, next_obs, reset_step,
             episode_done=None, episode_return=None, episode_length=None) -> None:
        self._env_steps += self.num_envs
        for e in range(self.num_envs):
            frames = self._frames[e]
            if reset_step[e]:  # a new episode: its whole first stack
                self._obs_start[e] = len(frames)
                frames.extend(self._stack(next_obs[e]))
                continue
            position = self._obs_start[e]
            for name, value in (("env", e), ("obs_pos", position), ("action", actions[e]),
                                ("reward", reward[e]), ("terminated", terminated[e]),
                                ("truncated", truncated[e])):
                self._transitions[name].append(value)
            frames.append(self._stack(next_obs[e])[-1])
            self._obs_start[e] = position + 1
        if episode_done is not None:
            for e in np.flatnonzero(episode_done):
                self._returns.append(float(episode_return[e]))
                self._lengths.append(int(episode_length[e]))
        self._obs = next_obs

    def finish(self) -> Chunk:
        """The chunk so far (with no priorities: ``Chunk.priority`` is set by the actor)."""
        offsets = np.cumsum([0] + [len(f) for f in self._frames[:-1]])
        fields = {name: np.asarray(values, dtype=dtype)
                  for (name, dtype), values in zip(_FIELDS.items(), self._transitions.values())}
        fields["obs_pos"] += offsets[fields["env"]] if len(fields["env"]) else 0
        chunk = Chunk(frames=np.stack([f for frames in self._frames for f in frames]),
                      priority=np.zeros(0, np.float32), env_steps=self._env_steps,
                      episode_returns=np.asarray(self._returns, np.float64),
                      episode_lengths=np.asarray(self._lengths, np.int64), **fields)
        self._begin()
        return chunk


def stacks(chunk: Chunk, frame_stack: int):
    """(obs, next_obs) of every transition, (T, *obs_shape) each: copies, for the actor's
    own use (its priorities); the learner's ``add_chunk`` takes views instead."""
    k = frame_stack
    index = chunk.obs_pos[:, None] + np.arange(k)[None, :]
    obs, next_obs = chunk.frames[index], chunk.frames[index + 1]
    if k == 1:
        obs, next_obs = obs[:, 0], next_obs[:, 0]
    return obs, next_obs


def n_step_targets(chunk: Chunk, next_values: np.ndarray, gamma: float, n_step: int) -> np.ndarray:
    """Each transition's n-step target within the chunk: the discounted sum of up to
    ``n_step`` rewards of its environment's episode, plus the discounted
    ``next_values`` (max_a Q of a transition's next_obs) of the window's last
    transition unless that one terminated. Windows end early at an episode's end and
    at the chunk's end: the buffer computes the exact returns later; these only give
    the first priorities (Ape-X)."""
    targets = np.empty(len(chunk), np.float64)
    for e in np.unique(chunk.env):
        rows = np.flatnonzero(chunk.env == e)  # this env's transitions, in order
        reward = chunk.reward[rows].astype(np.float64)
        terminated = chunk.terminated[rows]
        ends = terminated | chunk.truncated[rows]
        ends[-1] = True
        count = len(rows)
        total, discount = np.zeros(count), np.ones(count)
        last = np.arange(count)
        open_window = np.ones(count, bool)
        for j in range(n_step):
            index = np.arange(count) + j
            grows = open_window & (index < count)
            total[grows] += discount[grows] * reward[index[grows]]
            discount[grows] *= gamma
            last[grows] = index[grows]
            open_window = grows & ~ends[np.minimum(index, count - 1)]
        bootstrap = np.where(terminated[last], 0.0, discount * next_values[rows][last])
        targets[rows] = total + bootstrap
    return targets


def add_chunk(replay, chunk: Chunk, env_base: int) -> None:
    """Adds ``chunk``'s transitions to ``replay``'s environments ``env_base + env``, with
    the chunk's priorities where it has them: one ``add_frames`` call, which reads the
    stacks straight from ``chunk.frames`` (no copy before the buffer's own)."""
    with_priority = len(chunk.priority) == len(chunk)
    replay.add_frames(chunk.frames, chunk.obs_pos, chunk.action, chunk.reward, chunk.terminated,
                      chunk.truncated, env_ids=chunk.env + env_base,
                      priority=chunk.priority if with_priority else None)
