"""Naive references the compiled code is checked against."""
import collections

import numpy as np


class NaiveReplayBuffer:
    """Keeps full copies of the last ``capacity // num_envs`` transitions of each env.

    Rewards double as unique transition ids in the tests, so a sampled transition
    is found by its reward.
    """

    def __init__(self, capacity, num_envs):
        per_env = capacity // num_envs
        self.envs = [collections.deque(maxlen=per_env) for _ in range(num_envs)]

    def add(self, obs, action, reward, next_obs, terminated, env_ids=None):
        env_ids = range(len(self.envs)) if env_ids is None else env_ids
        for row, env in enumerate(env_ids):
            self.envs[env].append((np.array(obs[row]), int(action[row]), float(reward[row]),
                                   np.array(next_obs[row]), bool(terminated[row])))

    def newest(self, env, count):
        """The ``count`` newest transitions of ``env``, keyed by reward."""
        held = list(self.envs[env])
        return {t[2]: t for t in held[len(held) - count:]} if count else {}


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


def per_env_valid_counts(rb):
    counters = rb.state_dict()["storage"]["counters"]
    return (counters[:, 0] - counters[:, 2]).tolist()


def check_against_reference(rb, ref, draws):
    """Every sampled transition is bit-identical to one of the newest the reference
    holds, and the samples cover exactly the newest len_e transitions of each env.
    Batches may be on any device."""
    expected = {}
    for env, count in enumerate(per_env_valid_counts(rb)):
        expected.update(ref.newest(env, count))
    assert len(expected) == len(rb) <= rb.capacity
    seen = set()
    for _ in range(draws):
        batch = rb.sample(len(rb))
        for i, reward in enumerate(batch.reward.tolist()):
            assert reward in expected, f"sampled transition {reward} is not held"
            obs, action, _, next_obs, terminated = expected[reward]
            np.testing.assert_array_equal(batch.obs[i].cpu().numpy(), obs)
            np.testing.assert_array_equal(batch.next_obs[i].cpu().numpy(), next_obs)
            assert batch.action[i].item() == action
            assert batch.terminated[i].item() == terminated
            seen.add(reward)
    return seen, expected
