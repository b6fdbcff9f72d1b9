"""The Stable-Baselines3 adapter, against SB3's own ReplayBuffer and inside SB3's DQN."""
import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

pytest.importorskip("stable_baselines3")

from stable_baselines3 import DQN  # noqa: E402
from stable_baselines3.common.buffers import NStepReplayBuffer  # noqa: E402
from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import (  # noqa: E402
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from dqnfast.contrib.sb3 import DQNFastReplayBuffer  # noqa: E402

FRAME_STACK = 4


class TinyImageEnv(gym.Env):
    """Channel-last uint8 frames that tell where they come from.

    Every pixel of the frame at step ``t`` of an episode is ``t + 1`` except pixel
    (0, 0), the episode's id (1..255), so a stacked observation shows whether its
    frames are consecutive and of one episode. Episodes end at random (terminated)
    or at ``max_steps`` (truncated, via TimeLimit). Rewards are random floats, so
    they identify transitions.
    """

    def __init__(self, size=8, channels=1, max_steps=12, end_prob=0.1):
        self.observation_space = spaces.Box(0, 255, (size, size, channels), np.uint8)
        self.action_space = spaces.Discrete(3)
        self.end_prob = end_prob
        self.episode = 0
        self.t = 0
        self._max_steps = max_steps  # applied by TimeLimit in make_env

    def _frame(self):
        frame = np.full(self.observation_space.shape, self.t + 1, np.uint8)
        frame[0, 0] = self.episode % 255 + 1
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        assert self.action_space.contains(action)
        self.t += 1
        terminated = bool(self.np_random.random() < self.end_prob)
        return self._frame(), float(self.np_random.random()), terminated, False, {}


def make_env(**kwargs):
    env = TinyImageEnv(**kwargs)
    return gym.wrappers.TimeLimit(env, max_episode_steps=env._max_steps)


def stacked_image_vec_env(n_envs=2, seed=0, **kwargs):
    """TinyImageEnv frames stacked by VecFrameStack, transposed to (k * C, H, W)."""
    venv = make_vec_env(make_env, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
    return VecTransposeImage(VecFrameStack(venv, n_stack=FRAME_STACK))


def dqn(env, **kwargs):
    params = dict(learning_starts=40, batch_size=16, train_freq=4, target_update_interval=50,
                  buffer_size=2_000, policy_kwargs=dict(net_arch=[16]), device="cpu", seed=0,
                  replay_buffer_class=DQNFastReplayBuffer)
    params.update(kwargs)
    return DQN("MlpPolicy", env, **params)


def check_stack(stack, channels):
    """`stack` (k * C, H, W) holds zero frames, then consecutive frames of one episode."""
    frames = stack.reshape(FRAME_STACK, channels, *stack.shape[1:])
    nonzero = [i for i in range(FRAME_STACK) if frames[i].any()]
    assert nonzero and nonzero == list(range(nonzero[0], FRAME_STACK)), stack
    assert not frames[: nonzero[0]].any()
    steps = [int(frames[i, 0, 1, 1]) for i in nonzero]
    episodes = {int(frames[i, 0, 0, 0]) for i in nonzero}
    assert steps == list(range(steps[0], steps[0] + len(steps))), steps
    assert len(episodes) == 1
    if nonzero[0] > 0:
        assert steps[0] == 1  # zero padding only at episode starts


# -- inside SB3's DQN -----------------------------------------------------------------------


@pytest.mark.parametrize("n_envs", [1, 2])
def test_dqn_trains_on_cartpole(n_envs):
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    model = dqn(env)
    model.learn(300)
    rb = model.replay_buffer
    assert isinstance(rb, DQNFastReplayBuffer) and isinstance(rb, SB3ReplayBuffer)
    assert model.num_timesteps >= 300 and model._n_updates > 0
    assert len(rb) == model.num_timesteps  # nothing dropped: the buffer is far from full
    assert rb.pos == model.num_timesteps // n_envs and not rb.full
    assert rb.size() == rb.pos
    assert rb.buffer_size == 2_000 // n_envs
    assert rb.dqnfast_buffer.num_envs == n_envs
    samples = rb.sample(64)
    assert samples.observations.shape == (64, 4) and samples.observations.dtype == torch.float32
    assert samples.actions.shape == (64, 1) and samples.actions.dtype == torch.int64
    assert set(samples.actions.flatten().tolist()) <= {0, 1}
    assert samples.dones.shape == (64, 1) and set(samples.dones.flatten().tolist()) <= {0.0, 1.0}
    assert torch.all(samples.rewards == 1.0)  # CartPole pays 1 per step


@pytest.mark.parametrize("channels", [1, 3])
def test_dqn_trains_on_stacked_frames(channels):
    size = 8 if channels == 1 else 16  # SB3 takes (8, 8, 12) for channel-first
    env = stacked_image_vec_env(n_envs=2, size=size, channels=channels)
    model = dqn(env, replay_buffer_kwargs=dict(frame_stack=FRAME_STACK))
    model.learn(240)
    rb = model.replay_buffer
    assert rb.obs_shape == (FRAME_STACK * channels, size, size)
    assert rb.dqnfast_buffer.frame_stack == FRAME_STACK
    assert model._n_updates > 0
    assert len(rb) == model.num_timesteps == 240

    samples = rb.sample(200)
    obs, next_obs = samples.observations.numpy(), samples.next_observations.numpy()
    assert obs.dtype == np.uint8 and obs.shape == (200, FRAME_STACK * channels, size, size)
    assert np.array_equal(next_obs[:, :-channels], obs[:, channels:])  # stacks shift by a frame
    for o, n in zip(obs, next_obs):
        check_stack(o, channels)
        check_stack(n, channels)
        assert n[-1, 1, 1] == o[-1, 1, 1] + 1 and n[-1, 0, 0] == o[-1, 0, 0]
    assert samples.dones.any() and not samples.dones.all()


# -- against SB3's ReplayBuffer ---------------------------------------------------------------


def fill_both(ours, theirs, venv, steps, seed=0):
    """Adds the same `steps` vector steps to both buffers, the way SB3's
    OffPolicyAlgorithm._store_transition does."""
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    counts = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        actions = rng.integers(0, venv.action_space.n, venv.num_envs)
        new_obs, rewards, dones, infos = venv.step(actions)
        next_obs = new_obs.copy()
        for i, done in enumerate(dones):
            if done:
                next_obs[i] = infos[i]["terminal_observation"]
                counts["truncated" if infos[i]["TimeLimit.truncated"] else "terminated"] += 1
        for buffer in (ours, theirs):
            buffer.add(obs, next_obs, actions, rewards, dones, infos)
        obs = new_obs
    return counts


def key(obs, action, next_obs, done, reward):
    return (np.asarray(obs).tobytes(), int(action), np.asarray(next_obs).tobytes(),
            float(done), float(reward))


def sb3_held(theirs):
    """Keys of all transitions SB3's buffer holds, with its timeout handling."""
    held = set()
    for row in range(theirs.size()):
        for e in range(theirs.n_envs):
            done = theirs.dones[row, e] * (1 - theirs.timeouts[row, e])
            held.add(key(theirs.observations[row, e], theirs.actions[row, e, 0],
                         theirs.next_observations[row, e], done, theirs.rewards[row, e]))
    return held


def sampled_keys(samples):
    return [key(*fields) for fields in zip(samples.observations.numpy(), samples.actions[:, 0],
                                           samples.next_observations.numpy(),
                                           samples.dones[:, 0], samples.rewards[:, 0])]


@pytest.mark.parametrize("handle_timeout_termination", [True, False])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_samples_match_sb3_buffer(n_envs, handle_timeout_termination):
    venv = stacked_image_vec_env(n_envs=n_envs, seed=n_envs)
    args = (60 * n_envs, venv.observation_space, venv.action_space)
    kwargs = dict(device="cpu", n_envs=n_envs, handle_timeout_termination=handle_timeout_termination)
    # Enough spare frames to keep every transition: 60 + 4 per episode start.
    ours = DQNFastReplayBuffer(*args, **kwargs, frame_stack=FRAME_STACK, seed=0,
                               frame_capacity=300 * n_envs)
    theirs = SB3ReplayBuffer(*args, **kwargs)
    counts = fill_both(ours, theirs, venv, steps=150)  # wraps around 2.5 times
    assert counts["terminated"] > 0 and counts["truncated"] > 0

    assert ours.pos == theirs.pos and ours.full == theirs.full and ours.size() == theirs.size()
    held = sb3_held(theirs)
    assert len(held) == len(ours) == 60 * n_envs  # keys are unique: rewards are random floats
    seen = set()
    for _ in range(10):
        keys = sampled_keys(ours.sample(500))
        assert set(keys) <= held
        seen.update(keys)
    assert seen == held  # 5000 draws leave none of <= 180 transitions out

    # Same dtypes, shapes and devices as SB3's samples.
    mine, reference = ours.sample(7), theirs.sample(7)
    assert mine.discounts is None and reference.discounts is None
    for a, b in zip(mine[:5], reference[:5]):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    # Truncated episode ends bootstrap only under handle_timeout_termination.
    dones = {k[3] for k in held}
    assert dones == {0.0, 1.0}


def n_step_keys(samples):
    """Keys of n-step samples: rewards and discounts rounded (SB3 sums in another order);
    the discount counts only where the episode did not terminate (SB3's target is
    reward + (1 - done) * discount * next value)."""
    return [(o.tobytes(), int(a), n.tobytes(), float(d), round(float(r), 4),
             round(float(g) * (1 - float(d)), 5))
            for o, a, n, d, r, g in zip(samples.observations.numpy(), samples.actions[:, 0],
                                        samples.next_observations.numpy(), samples.dones[:, 0],
                                        samples.rewards[:, 0], samples.discounts[:, 0])]


@pytest.mark.parametrize("handle_timeout_termination", [True, False])
def test_n_step_samples_match_sb3_n_step_buffer(handle_timeout_termination):
    """n_steps=3 samples are SB3's NStepReplayBuffer's, window for window, except the
    last transitions before the write cursor, which SB3 cuts short and dqnfast holds
    back until their windows are complete."""
    n_steps, gamma = 3, 0.9
    venv = stacked_image_vec_env(n_envs=1, seed=5, end_prob=0.1)
    args = (60, venv.observation_space, venv.action_space)
    kwargs = dict(device="cpu", n_envs=1, handle_timeout_termination=handle_timeout_termination,
                  n_steps=n_steps, gamma=gamma)
    ours = DQNFastReplayBuffer(*args, **kwargs, frame_stack=FRAME_STACK, seed=0,
                               frame_capacity=300)
    theirs = NStepReplayBuffer(*args, **kwargs)
    counts = fill_both(ours, theirs, venv, steps=150)  # wraps around 2.5 times
    assert counts["terminated"] > 0 and counts["truncated"] > 0

    held = set(n_step_keys(theirs._get_samples(np.arange(theirs.size()))))
    assert len(held) == 60
    seen = set()
    for _ in range(10):
        samples = ours.sample(500)
        assert samples.discounts.shape == (500, 1) and samples.discounts.dtype == torch.float32
        seen.update(n_step_keys(samples))
    assert seen <= held
    assert len(held - seen) <= n_steps - 1 and len(seen) == len(ours)
    discounts = {key[5] for key in seen}
    assert {0.0, round(gamma ** n_steps, 5)} <= discounts  # terminated and full windows
    # Truncations cut windows short (without handle_timeout_termination they terminate).
    assert bool(discounts - {0.0, round(gamma ** n_steps, 5)}) == handle_timeout_termination


def test_dqn_trains_with_n_step_returns():
    env = stacked_image_vec_env(n_envs=2, size=8, channels=1)
    model = dqn(env, gamma=0.9,
                replay_buffer_kwargs=dict(frame_stack=FRAME_STACK, n_steps=3, gamma=0.9))
    model.learn(240)
    rb = model.replay_buffer
    assert rb.dqnfast_buffer.n_step == 3 and model._n_updates > 0
    assert "n_steps=3" in repr(rb)
    restored = pickle.loads(pickle.dumps(rb))
    assert restored.dqnfast_buffer.n_step == 3 and len(restored) == len(rb)


def test_scarce_frames_keep_a_subset():
    """With few spare frames, short episodes drop the oldest transitions early;
    what is left is still held by SB3's buffer."""
    venv = stacked_image_vec_env(n_envs=2, max_steps=3, end_prob=0.3)
    args = (400, venv.observation_space, venv.action_space)
    ours = DQNFastReplayBuffer(*args, device="cpu", n_envs=2, frame_stack=FRAME_STACK, seed=1,
                               frame_capacity=2 * 250)
    theirs = SB3ReplayBuffer(*args, device="cpu", n_envs=2)
    fill_both(ours, theirs, venv, steps=300)
    held = sb3_held(theirs)
    assert 0 < len(ours) < len(held)
    assert set(sampled_keys(ours.sample(2000))) <= held


def test_vector_observations_stacked_by_vec_frame_stack():
    """VecFrameStack stacks 1-D observations along their only axis: (4 * 4,) for
    CartPole, stored as 4 frames of 4 floats."""
    venv = VecFrameStack(make_vec_env("CartPole-v1", n_envs=2, seed=0), n_stack=FRAME_STACK)
    args = (400, venv.observation_space, venv.action_space)
    ours = DQNFastReplayBuffer(*args, device="cpu", n_envs=2, frame_stack=FRAME_STACK, seed=0,
                               frame_capacity=2 * 400)
    theirs = SB3ReplayBuffer(*args, device="cpu", n_envs=2)
    counts = fill_both(ours, theirs, venv, steps=150)
    assert counts["terminated"] > 0
    assert ours.dqnfast_buffer.obs_shape == (FRAME_STACK, 4)
    held = sb3_held(theirs)
    assert len(ours) == len(held) == 300
    samples = ours.sample(1000)
    assert samples.observations.shape == (1000, 16) and samples.observations.dtype == torch.float32
    assert set(sampled_keys(samples)) <= held


def test_seeded_by_numpy_like_sb3():
    buffers = []
    for _ in range(2):
        venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
        np.random.seed(123)  # what DQN(seed=...) does before building its buffer
        buffers.append(DQNFastReplayBuffer(100, venv.observation_space, venv.action_space,
                                           device="cpu", n_envs=2))
        theirs = SB3ReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu", n_envs=2)
        fill_both(buffers[-1], theirs, venv, steps=20, seed=1)
    for a, b in zip(buffers[0].sample(16)[:5], buffers[1].sample(16)[:5]):
        assert torch.equal(a, b)


def test_sample_with_vec_normalize_and_small_batches():
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    vec_normalize = VecNormalize(venv)
    vec_normalize.obs_rms.mean = np.array([0.1, -0.2, 0.3, 0.5])
    vec_normalize.obs_rms.var = np.array([0.5, 2.0, 0.1, 4.0])
    vec_normalize.ret_rms.var = np.array(9.0)
    ours = DQNFastReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu",
                               n_envs=2, seed=3)
    theirs = SB3ReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu", n_envs=2)
    fill_both(ours, theirs, venv, steps=3)
    assert len(ours) == 6

    twin = copy.deepcopy(ours)  # same contents and same sampling generator
    raw = ours.sample(20)  # more than stored: drawn with replacement, as SB3 does
    normalized = twin.sample(20, env=vec_normalize)
    assert raw.observations.shape == normalized.observations.shape == (20, 4)
    assert set(sampled_keys(raw)) <= sb3_held(theirs)
    expected = vec_normalize.normalize_obs(raw.observations.numpy())
    assert torch.allclose(normalized.observations, torch.as_tensor(expected))
    expected = vec_normalize.normalize_reward(raw.rewards.numpy())
    assert torch.allclose(normalized.rewards, torch.as_tensor(expected))
    assert normalized.rewards.dtype == torch.float32
    assert torch.equal(normalized.actions, raw.actions) and torch.equal(normalized.dones, raw.dones)
    reference = theirs.sample(20, env=vec_normalize)
    for mine, ref in zip(normalized[:5], reference[:5]):
        assert mine.dtype == ref.dtype and mine.shape == ref.shape


def test_samples_are_fresh_tensors():
    venv = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    ours = DQNFastReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu")
    fill_both(ours, SB3ReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu"),
              venv, steps=20)
    first = ours.sample(8)
    kept = [t.clone() for t in first[:5]]
    ours.sample(8)
    for t, k in zip(first[:5], kept):
        assert torch.equal(t, k)


def test_reset_empties():
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    ours = DQNFastReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu", n_envs=2)
    fill_both(ours, SB3ReplayBuffer(100, venv.observation_space, venv.action_space, device="cpu",
                                    n_envs=2), venv, steps=5)
    assert len(ours) == 10 and ours.pos == 5
    ours.reset()
    assert len(ours) == 0 and ours.pos == 0 and not ours.full
    with pytest.raises(ValueError, match="empty"):
        ours.sample(4)


# -- saving ---------------------------------------------------------------------------------


def test_save_and_load_replay_buffer(tmp_path):
    env = stacked_image_vec_env(n_envs=2)
    model = dqn(env, replay_buffer_kwargs=dict(frame_stack=FRAME_STACK))
    model.learn(120)
    rb = model.replay_buffer
    path = tmp_path / "buffer.pkl"
    model.save_replay_buffer(path)

    other = dqn(stacked_image_vec_env(n_envs=2), replay_buffer_kwargs=dict(frame_stack=FRAME_STACK))
    other.load_replay_buffer(path)
    loaded = other.replay_buffer
    assert isinstance(loaded, DQNFastReplayBuffer) and loaded is not rb
    assert (len(loaded), loaded.pos, loaded.full) == (len(rb), rb.pos, rb.full) == (120, 60, False)
    assert loaded.device == other.device
    mine, theirs = rb.dqnfast_buffer.state_dict(), loaded.dqnfast_buffer.state_dict()
    assert mine["config"] == theirs["config"]
    for name, tensor in mine["storage"].items():
        assert torch.equal(tensor, theirs["storage"][name]), name
        assert tensor.data_ptr() != theirs["storage"][name].data_ptr()
    # The sampling generator came along: both draw the same batch.
    for a, b in zip(rb.sample(32)[:5], loaded.sample(32)[:5]):
        assert torch.equal(a, b)

    # A loaded buffer pickles again before its first use, and training goes on.
    again = pickle.loads(pickle.dumps(pickle.loads(path.read_bytes())))
    assert len(again) == 120
    other.learn(40, reset_num_timesteps=False)
    assert len(loaded) == 160 and loaded.pos == 80


# -- what is not supported ------------------------------------------------------------------


BOX = spaces.Box(-1, 1, (3,), np.float32)


@pytest.mark.parametrize("observation_space, action_space, kwargs, error, message", [
    (spaces.Dict({"x": BOX}), spaces.Discrete(2), {}, TypeError, "Box observation"),
    (spaces.Discrete(5), spaces.Discrete(2), {}, TypeError, "Box observation"),
    (BOX, BOX, {}, TypeError, "Discrete action"),
    (BOX, spaces.MultiDiscrete([2, 2]), {}, TypeError, "Discrete action"),
    (BOX, spaces.Discrete(2), {"optimize_memory_usage": True}, ValueError, "optimize_memory_usage"),
    (BOX, spaces.Discrete(2), {"frame_stack": 2}, ValueError, "first axis"),
    (spaces.Box(0, 255, (10, 10, 4), np.uint8), spaces.Discrete(2), {"frame_stack": 4},
     ValueError, "channels_order='first'"),
    (BOX, spaces.Discrete(2), {"frame_stack": 0}, ValueError, "frame_stack"),
])
def test_unsupported_configurations(observation_space, action_space, kwargs, error, message):
    with pytest.raises(error, match=message):
        DQNFastReplayBuffer(100, observation_space, action_space, device="cpu", **kwargs)


def test_dqn_with_dict_observations_is_refused():
    class DictEnv(gym.Env):
        observation_space = spaces.Dict({"x": BOX})
        action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return {"x": np.zeros(3, np.float32)}, {}

        def step(self, action):
            return {"x": np.zeros(3, np.float32)}, 0.0, True, False, {}

    with pytest.raises(TypeError, match="Box observation"):
        DQN("MultiInputPolicy", DictEnv(), replay_buffer_class=DQNFastReplayBuffer, device="cpu")


def test_wrong_observation_shape_is_refused():
    ours = DQNFastReplayBuffer(100, BOX, spaces.Discrete(2), device="cpu", n_envs=2)
    obs = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="n_envs"):
        ours.add(obs, obs, np.zeros(3), np.zeros(3), np.zeros(3, bool), [{}] * 3)
    assert len(ours) == 0 and ours.pos == 0
