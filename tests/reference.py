"""Naive references the compiled code is checked against, and the helpers the CPU and
GPU tests share (nothing here needs more than numpy and torch)."""
import collections

import numpy as np
import torch


class NaiveReplayBuffer:
    """Keeps full copies of the newest transitions and derives from them, by the documented
    rules alone, which transitions the buffer holds and what an n-step sample of each
    must be.

    Per env: transition n is held iff it is among the last ``capacity // num_envs``
    and its oldest frame is among the last ``frame_capacity // num_envs`` frames
    written (a stream start writes its ``k`` frames, every transition one more). It is
    sampleable iff held and its window is complete: ``n_step`` transitions of its
    stream, or fewer where the stream ended (a flag, or a next transition whose obs is
    not this one's next_obs).
    """

    def __init__(self, capacity, num_envs, *, n_step=1, gamma=0.99, frame_stack=1,
                 frame_capacity=None):
        self.per_env, self.n_step, self.gamma, self.k = capacity // num_envs, n_step, gamma, frame_stack
        # Without frame_capacity: frames never run out.
        self.frames_per_env = None if frame_capacity is None else frame_capacity // num_envs
        # The newest per_env transitions of each env (older ones are never held again);
        # envs[e][i] is transition first_kept[e] + i.
        self.envs = [collections.deque(maxlen=self.per_env) for _ in range(num_envs)]
        self.first_kept = [0] * num_envs
        self.frames_written = [0] * num_envs

    @classmethod
    def like(cls, rb):
        """A reference configured as ``rb``."""
        return cls(rb.capacity, rb.num_envs, n_step=rb.n_step, gamma=rb.gamma,
                   frame_stack=rb.frame_stack, frame_capacity=rb.frame_capacity)

    def add(self, obs, action, reward, next_obs, terminated, env_ids=None, truncated=None):
        env_ids = range(len(self.envs)) if env_ids is None else env_ids
        for row, env in enumerate(env_ids):
            held = self.envs[env]
            obs_row = np.array(obs[row])
            trunc = bool(truncated[row]) if truncated is not None else False
            continues = bool(held) and not held[-1]["stream_ends"] \
                and np.array_equal(obs_row, held[-1]["next_obs"])
            if held and not continues:
                held[-1]["stream_ends"] = True  # a restart without a flag
            if not continues:
                self.frames_written[env] += self.k
            if len(held) == self.per_env:
                self.first_kept[env] += 1  # the deque drops its oldest
            held.append(dict(obs=obs_row, action=int(action[row]), reward=float(reward[row]),
                             next_obs=np.array(next_obs[row]), terminated=bool(terminated[row]),
                             newest_frame=self.frames_written[env] - 1,
                             stream_ends=bool(terminated[row]) or trunc))
            self.frames_written[env] += 1

    def transition(self, env, n):
        return self.envs[env][n - self.first_kept[env]]

    def written(self, env):
        return self.first_kept[env] + len(self.envs[env])

    def held(self, env):
        """Absolute numbers of the transitions env holds."""
        first, end = self.first_kept[env], self.written(env)
        if self.frames_per_env is not None:
            oldest_frame = self.frames_written[env] - self.frames_per_env
            while first < end and self.transition(env, first)["newest_frame"] - self.k + 1 < oldest_frame:
                first += 1
        return range(first, end)

    def window(self, env, n):
        """The transitions of n's n-step window, or None while it is incomplete."""
        steps = []
        for m in range(n, n + self.n_step):
            if m >= self.written(env):
                return None
            steps.append(self.transition(env, m))
            if steps[-1]["stream_ends"]:
                break
        return steps

    def sampleable(self):
        """{(env, n): expected n-step transition} of every sampleable transition."""
        out = {}
        for env in range(len(self.envs)):
            for n in self.held(env):
                steps = self.window(env, n)
                if steps is None:
                    continue
                reward = sum(self.gamma ** i * t["reward"] for i, t in enumerate(steps))
                terminated = steps[-1]["terminated"]
                out[(env, n)] = dict(obs=steps[0]["obs"], action=steps[0]["action"], reward=reward,
                                     next_obs=steps[-1]["next_obs"], terminated=terminated,
                                     discount=0.0 if terminated else self.gamma ** len(steps))
        return out


class EpisodeStreams:
    """Synthetic frame-stacked environments: random frames, random episode ends.

    Each env's stack shifts by one frame per step. At a reset the whole stack is
    new, either zero-padded (zeros then one frame) or k random frames, so stacks
    at episode starts are whatever the "environment" gave. ``low_entropy`` frames
    make coincidentally equal frames and stacks likely.
    """

    def __init__(self, rng, num_envs, frame_stack, frame_shape, dtype, *, end_prob=0.1,
                 silent_reset_prob=0.0, low_entropy=False):
        self.rng, self.num_envs, self.k = rng, num_envs, frame_stack
        self.frame_shape, self.dtype = tuple(frame_shape), dtype
        self.end_prob, self.silent_reset_prob = end_prob, silent_reset_prob
        self.high = 3 if low_entropy else 256
        self.stacks = np.stack([self._reset_stack() for _ in range(num_envs)])
        self.next_id = 1

    def _frame(self):
        return self.rng.integers(0, self.high, self.frame_shape).astype(self.dtype)

    def _reset_stack(self):
        if self.rng.random() < 0.5:
            stack = np.zeros((self.k, *self.frame_shape), self.dtype)
            stack[-1] = self._frame()
            return stack
        return np.stack([self._frame() for _ in range(self.k)])

    def obs(self):
        """The current observations, shaped (num_envs, *obs_shape)."""
        return self.stacks if self.k > 1 else self.stacks[:, 0]

    def step(self):
        """Returns (obs, action, reward, next_obs, terminated, truncated) and moves on."""
        obs = self.obs().copy()
        new = np.stack([self._frame() for _ in range(self.num_envs)])
        nxt_stacks = np.concatenate([self.stacks[:, 1:], new[:, None]], axis=1)
        next_obs = nxt_stacks if self.k > 1 else nxt_stacks[:, 0]
        ends = self.rng.random(self.num_envs) < self.end_prob
        terminated = ends & (self.rng.random(self.num_envs) < 0.5)
        truncated = ends & ~terminated
        action = self.rng.integers(0, 6, self.num_envs)
        reward = np.arange(self.next_id, self.next_id + self.num_envs, dtype=np.float32)
        self.next_id += self.num_envs
        self.stacks = nxt_stacks.copy()
        for e in range(self.num_envs):
            if ends[e] or self.rng.random() < self.silent_reset_prob:
                self.stacks[e] = self._reset_stack()
        return obs, action, reward, next_obs.copy(), terminated, truncated


def per_env_sampleable_counts(rb):
    """Sampleable transitions per env, from the buffer's own counters."""
    written, _, first_valid, stream_open, stream_start = \
        rb.state_dict()["storage"]["counters"].cpu().numpy().T
    pending = stream_open * np.minimum(rb.n_step - 1, written - stream_start)
    return (written - pending - first_valid).tolist()


def decode_index(rb, index):
    """(env, absolute transition number) of a batch's index entry."""
    return index % rb.num_envs, index // rb.num_envs


def check_batch_row(batch, i, expected):
    """Row i of a batch equals the reference's n-step transition (rewards to float32 rounding)."""
    np.testing.assert_array_equal(batch.obs[i].cpu().numpy(), expected["obs"])
    np.testing.assert_array_equal(batch.next_obs[i].cpu().numpy(), expected["next_obs"])
    assert batch.action[i].item() == expected["action"]
    assert batch.terminated[i].item() == expected["terminated"]
    np.testing.assert_allclose(batch.reward[i].item(), expected["reward"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch.discount[i].item(), expected["discount"], rtol=1e-6)


def check_against_reference(rb, ref, draws):
    """Every sampled transition is the reference's n-step transition of the one its
    index names, bit for bit; the buffer's sampleable count is the reference's."""
    expected = ref.sampleable()
    assert len(expected) == len(rb) <= rb.capacity
    seen = set()
    for _ in range(draws):
        batch = rb.sample(len(rb))
        for i, index in enumerate(batch.index.tolist()):
            key = decode_index(rb, index)
            assert key in expected, f"sampled transition {key} is not sampleable"
            check_batch_row(batch, i, expected[key])
            seen.add(key)
    return seen, expected


def replay_op_args(rb, streams, batch_size, device="cpu"):
    """Arguments of each replay op on a copy of rb's storage: {op: args}."""
    storage = {n: t.clone() for n, t in rb._storage.tensors().items()}
    obs, action, reward, next_obs, terminated, truncated = (
        torch.as_tensor(x).to(device) for x in streams.step())
    trees = [storage.get(n) for n in ("priority", "sum_tree", "min_tree", "max_priority")]
    priority = torch.rand(2, device=device) if rb.prioritized else None
    add = (storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
           storage["terminated"], storage["truncated"], storage["counters"],
           torch.zeros(2, dtype=torch.int64, device=device), *trees, obs, next_obs,
           action.long(), reward.float(), terminated, truncated, torch.tensor([1, 0]),
           priority, rb.frame_stack, rb.n_step, rb.alpha, rb.priority_eps, 6)
    batch = rb.sample(batch_size)
    out = [torch.empty_like(getattr(batch, name)) for name in
           ("obs", "next_obs", "action", "reward", "terminated", "discount", "index", "weight")]
    bits = torch.randint(0, 2**62, (batch_size,), device=device)
    sample = (storage["frames"], storage["obs_pos"], storage["action"], storage["reward"],
              storage["terminated"], storage["truncated"], storage["counters"],
              storage.get("sum_tree"), storage.get("min_tree"), bits, rb.frame_stack, rb.n_step,
              rb.gamma, torch.tensor([rb.beta], dtype=torch.float64, device=device), *out)
    ops = {torch.ops.dqnfast.replay_add.default: add,
           torch.ops.dqnfast.replay_sample.default: sample}
    if device == "cpu":  # one transition from a chunk of frames (host storage only)
        chunk = (torch.cat([obs[0], next_obs[0][-1:]]) if rb.frame_stack > 1
                 else torch.stack([obs[0], next_obs[0]]))
        ops[torch.ops.dqnfast.replay_add_frames.default] = (
            *add[:7], *trees, chunk, torch.tensor([0]), action[:1].long(), reward[:1].float(),
            terminated[:1], truncated[:1], torch.tensor([1]),
            None if priority is None else priority[:1], rb.frame_stack, rb.n_step, rb.alpha,
            rb.priority_eps, 6)
    if rb.prioritized:
        ops[torch.ops.dqnfast.replay_update_priorities.default] = (
            *trees, storage["counters"], batch.index.clone(), torch.rand(batch_size, device=device),
            rb.n_step, rb.alpha, rb.priority_eps)
    return ops


def chunk_of(streams, steps=3):
    """add_frames arguments for `steps` steps of env 1 (rows in stream order), and the
    same steps as add calls."""
    adds, frames = [], None
    for _ in range(steps):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        adds.append((obs[1:], action[1:], reward[1:], next_obs[1:], terminated[1:], truncated[1:]))
    positions, pieces = [], []
    for obs, action, reward, next_obs, terminated, truncated in adds:
        continues = frames is not None and np.array_equal(frames[-4:], obs[0])
        if not continues:
            pieces.append(obs[0])
            frames = obs[0]
        positions.append(sum(len(p) for p in pieces) - 4)
        pieces.append(next_obs[0][-1:])
        frames = np.concatenate(pieces)
    column = lambda i: np.concatenate([a[i] for a in adds])  # noqa: E731
    return dict(frames=frames, obs_pos=np.array(positions), action=column(1), reward=column(2),
                terminated=column(4), truncated=column(5), env_ids=np.ones(steps, np.int64)), adds
