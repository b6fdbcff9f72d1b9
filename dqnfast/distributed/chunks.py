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

n-step windows are the replay buffer's (see ``ReplayBuffer``): up to ``n_step``
transitions of one stream, ending early where a transition terminates or is truncated,
or where the next one's ``obs`` is not this one's ``next_obs`` (a restart). A chunk
carries only transitions whose windows are complete: the newest ``min(n_step - 1,
open stream's length)`` of each environment wait in the builder for the steps that
complete them and go with the next chunk. So the actor's n-step targets (its first
priorities) are exactly the returns the learner's buffer computes for the same
transitions. Those waiting when an actor dies are lost with it; the buffer then ends
the windows of that stream's last transitions at the restart, where the actor's
targets had looked further.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional

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
    only began a new episode and is no transition); ``finish()`` returns the chunk of
    every transition whose ``n_step`` window is complete and keeps the rest (at most
    ``n_step - 1`` per environment) for the next one."""

    def __init__(self, num_envs: int, frame_stack: int, n_step: int = 1):
        if n_step < 1:
            raise ValueError(f"expected n_step >= 1, got {n_step}")
        self.num_envs, self.frame_stack, self.n_step = num_envs, frame_stack, n_step

    def start(self, obs: np.ndarray) -> None:
        # Per environment: its frames, and where its current obs stack starts in them.
        self._frames: List[list] = [list(self._stack(o)) for o in obs]
        self._obs_start = [0] * self.num_envs
        self._open = [0] * self.num_envs  # transitions of each env's stream since it began
        self._rows: List[tuple] = []  # one per transition, in step order: _FIELDS' values
        self._begin_statistics()

    def _begin_statistics(self) -> None:
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
                self._open[e] = 0
                continue
            position = self._obs_start[e]
            self._rows.append((e, position, actions[e], reward[e], terminated[e], truncated[e]))
            frames.append(self._stack(next_obs[e])[-1])
            self._obs_start[e] = position + 1
            self._open[e] = 0 if terminated[e] or truncated[e] else self._open[e] + 1
        if episode_done is not None:
            for e in np.flatnonzero(episode_done):
                self._returns.append(float(episode_return[e]))
                self._lengths.append(int(episode_length[e]))

    def finish(self, priority_of: Optional[Callable[[Chunk], np.ndarray]] = None) -> Chunk:
        """The chunk of the transitions whose n-step windows are complete. With
        ``priority_of``, ``Chunk.priority`` is ``priority_of(everything)[sent]``, where
        ``everything`` is the chunk of every transition collected so far (the waiting
        ones too, so that each sent window lies whole inside it)."""
        waiting = self._waiting_rows()
        sent_rows = [row for row, wait in zip(self._rows, waiting) if not wait]
        # Each env's frames up to the obs stack of its first waiting transition (or
        # its current obs): what the sent transitions read; the rest waits too.
        cut = list(self._obs_start)
        for row, wait in zip(reversed(self._rows), reversed(waiting)):
            if wait:
                cut[row[0]] = row[1]
        k = self.frame_stack
        chunk = self._chunk(sent_rows, [f[:c + k] for f, c in zip(self._frames, cut)])
        if priority_of is not None:
            priority = np.asarray(priority_of(self._chunk(self._rows, self._frames)), np.float32)
            chunk.priority = priority[~np.asarray(waiting, bool)]
        self._frames = [f[c:] for f, c in zip(self._frames, cut)]
        self._obs_start = [start - c for start, c in zip(self._obs_start, cut)]
        self._rows = [(e, position - cut[e], *rest)
                      for (e, position, *rest), wait in zip(self._rows, waiting) if wait]
        self._begin_statistics()
        return chunk

    def _waiting_rows(self) -> List[bool]:
        """Per collected transition: is it among its env's newest ``min(n_step - 1,
        open stream's length)``, whose windows need steps not taken yet."""
        left = [min(self.n_step - 1, count) for count in self._open]
        waiting = [False] * len(self._rows)
        for i in range(len(self._rows) - 1, -1, -1):
            e = self._rows[i][0]
            if left[e]:
                waiting[i], left[e] = True, left[e] - 1
        return waiting

    def _chunk(self, rows: List[tuple], frames: List[list]) -> Chunk:
        columns = zip(*rows) if rows else [[]] * len(_FIELDS)
        fields = {name: np.asarray(values, dtype=dtype)
                  for (name, dtype), values in zip(_FIELDS.items(), columns)}
        offsets = np.cumsum([0] + [len(f) for f in frames[:-1]])
        fields["obs_pos"] += offsets[fields["env"]]
        return Chunk(frames=np.stack([f for env_frames in frames for f in env_frames]),
                     priority=np.zeros(0, np.float32), env_steps=self._env_steps,
                     episode_returns=np.asarray(self._returns, np.float64),
                     episode_lengths=np.asarray(self._lengths, np.int64), **fields)


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
    """Each transition's n-step target: its window's discounted rewards plus, unless the
    window's last transition terminated, ``gamma ** len(window)`` times that
    transition's ``next_values`` (max_a Q of its next_obs). Windows are the replay
    buffer's; one that would run past the chunk's last transition of its environment
    ends there, which never happens to a transition ``ChunkBuilder.finish`` sends."""
    targets = np.empty(len(chunk), np.float64)
    for e in np.unique(chunk.env):
        rows = np.flatnonzero(chunk.env == e)  # this env's transitions, in order
        reward = chunk.reward[rows].astype(np.float64)
        terminated = chunk.terminated[rows]
        restarts = np.append(chunk.obs_pos[rows][1:] != chunk.obs_pos[rows][:-1] + 1, True)
        ends = terminated | chunk.truncated[rows] | restarts
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
