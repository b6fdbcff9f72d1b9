"""dqnfast.envs: every env id, backend and mode behind one interface."""
import numpy as np
import pytest
import torch

import dqnfast
from dqnfast import envs
from dqnfast.extras import importable

gymnasium = pytest.importorskip("gymnasium")
HAS_ENVPOOL = importable("envpool")
HAS_ALE = importable("ale_py")
HAS_PYGAME = importable("pygame")
needs_envpool = pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool is not installed")
needs_ale = pytest.mark.skipif(not HAS_ALE, reason="ale-py is not installed")

ATARI_MODES = [
    pytest.param({"backend": "envpool", "preprocess": "native"}, marks=needs_envpool, id="envpool-native"),
    pytest.param({"backend": "envpool", "preprocess": "dqnfast"}, marks=needs_envpool, id="envpool-dqnfast"),
    pytest.param({"backend": "ale", "preprocess": "native"}, marks=needs_ale, id="ale-native"),
    pytest.param({"backend": "ale", "preprocess": "dqnfast"}, marks=needs_ale, id="ale-dqnfast"),
]
BACKENDS = [pytest.param("envpool", marks=needs_envpool), pytest.param("ale", marks=needs_ale)]


def play(env, steps, seed=0):
    """Random play from a reset, checking the interface on every step.

    Returns the finished episodes as dicts (return, length, terminated, truncated,
    plus the rewards summed here and counted lives lost) and the number of steps
    whose stacks were checked to shift by one frame.
    """
    rng = np.random.default_rng(seed)
    n = env.num_envs
    obs = env.reset()
    check_obs(env, obs)
    if env.frame_stack > 1:
        assert_fresh_stacks(obs)
    ended = np.zeros(n, bool)       # the previous step ended an episode or a life
    game_ended = np.ones(n, bool)   # ... a whole game (at the start: the reset)
    summed = np.zeros(n)            # reward summed over the game's transitions
    steps_seen = np.zeros(n, int)
    lives_lost = np.zeros(n, int)
    episodes, shifted = [], 0
    for _ in range(steps):
        actions = rng.integers(0, env.num_actions, n)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        check_obs(env, next_obs)
        assert reward.dtype == np.float32 and reward.shape == (n,)
        assert terminated.dtype == bool and truncated.dtype == bool
        assert terminated.shape == truncated.shape == (n,)
        reset_step, done = info["reset_step"], info["episode_done"]
        assert reset_step.dtype == bool and done.dtype == bool
        # Next-step autoreset: the step after an ended episode (or life) resets it.
        np.testing.assert_array_equal(reset_step, ended)
        assert not reward[reset_step].any() and not terminated[reset_step].any()
        assert not (done & ~(terminated | truncated)).any()
        assert np.isnan(info["episode_return"][~done]).all()
        assert not info["episode_length"][~done].any()
        if env.frame_stack > 1:
            # A new game starts from copies of its first frame; otherwise each step
            # pushes one frame, which the replay buffer relies on.
            assert_fresh_stacks(next_obs[reset_step & game_ended])
            live = ~reset_step
            np.testing.assert_array_equal(next_obs[live, :-1], obs[live, 1:])
            shifted += int(live.sum())
        summed += np.where(reset_step, 0, reward)
        steps_seen += ~reset_step
        lives_lost += terminated & ~done
        for i in np.flatnonzero(done):
            episodes.append({"return": info["episode_return"][i], "length": info["episode_length"][i],
                             "terminated": terminated[i], "truncated": truncated[i],
                             "summed": summed[i], "steps": steps_seen[i], "lives_lost": lives_lost[i]})
        summed[done] = 0
        steps_seen[done] = 0
        lives_lost[done] = 0
        ended = terminated | truncated
        game_ended = done
        obs = next_obs
    return episodes, shifted


def check_obs(env, obs):
    assert isinstance(obs, np.ndarray)
    assert obs.shape == (env.num_envs, *env.obs_shape)
    assert torch.from_numpy(obs).dtype == env.obs_dtype


def assert_fresh_stacks(obs):
    """Each stack is k copies of its newest frame (a game's first observation)."""
    for stack in obs:
        for frame in stack[:-1]:
            np.testing.assert_array_equal(frame, stack[-1])


# -- every env id, backend and mode ----------------------------------------------------

@pytest.mark.parametrize("mode", ATARI_MODES)
def test_atari_smoke(mode):
    # 800 frames = 200 steps: every env is truncated at least once in 300 steps.
    with envs.make("Pong-v5", num_envs=4, seed=0, max_episode_frames=800, **mode) as env:
        assert (env.num_envs, env.obs_shape, env.obs_dtype) == (4, (4, 84, 84), torch.uint8)
        assert (env.num_actions, env.frame_stack) == (6, 4)
        episodes, shifted = play(env, 300)
    assert shifted > 4 * 280
    assert len(episodes) == 4
    for ep in episodes:
        assert ep["truncated"] and not ep["terminated"]
        assert ep["length"] == ep["steps"] == 800 // 4
        assert -21 <= ep["return"] <= 21 and ep["return"] == ep["summed"]  # Pong: +-1 rewards


@pytest.mark.parametrize("backend", BACKENDS)
def test_pong_games_end_at_21_points(backend):
    # Random play loses a game of Pong in about 800 steps; the reward of a step is
    # -1 or +1 per point, the game ends when one side has 21.
    with envs.make("Pong-v5", num_envs=4, seed=1, backend=backend) as env:
        rng = np.random.default_rng(1)
        env.reset()
        points = np.zeros((4, 2), int)
        resets = np.zeros(4, bool)
        games = []
        for _ in range(1400):
            obs, reward, terminated, truncated, info = env.step(rng.integers(0, 6, 4))
            assert not truncated.any()
            points[:, 0] += reward > 0
            points[:, 1] += reward < 0
            for i in np.flatnonzero(info["episode_done"]):
                assert terminated[i]
                assert points[i].max() == 21
                assert info["episode_return"][i] == points[i, 0] - points[i, 1]
                games.append(info["episode_return"][i])
                points[i] = 0
            assert not (info["reset_step"] & ~resets).any()
            resets = terminated | truncated
    assert len(games) >= 3
    assert all(-21 <= g < 0 for g in games)  # random play loses


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preprocess", ["native", "dqnfast"])
def test_breakout_episodic_life(backend, preprocess):
    # Breakout has 5 lives: a game is 4 life losses (terminated, not episode_done,
    # followed by a reset step) and then the game over. Rewards are 1, 4 or 7 points:
    # unclipped here, so the return is checked against them.
    with envs.make("Breakout-v5", num_envs=4, seed=2, backend=backend, preprocess=preprocess,
                   reward_clip=False) as env:
        episodes, _ = play(env, 600)
    assert len(episodes) >= 4
    for ep in episodes:
        assert ep["terminated"] and not ep["truncated"]
        assert ep["lives_lost"] == 4
        assert ep["return"] == ep["summed"] and ep["length"] == ep["steps"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reward_clip(backend):
    with envs.make("Breakout-v5", num_envs=4, seed=3, backend=backend) as env:
        env.reset()
        rng = np.random.default_rng(3)
        rewards, returns = [], []
        for _ in range(600):
            _, reward, _, _, info = env.step(rng.integers(0, 4, 4))
            rewards.append(reward)
            returns += list(info["episode_return"][info["episode_done"]])
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    assert len(returns) > 0 and all(r == int(r) and r >= 0 for r in returns)


def test_cartpole():
    with envs.make("CartPole-v1", num_envs=4, seed=0) as env:
        assert (env.obs_shape, env.obs_dtype, env.num_actions, env.frame_stack) == (
            (4,), torch.float32, 2, 1)
        episodes, _ = play(env, 300)
    assert len(episodes) > 10
    for ep in episodes:  # one point per step
        assert ep["terminated"] and ep["return"] == ep["length"] == ep["steps"] == ep["summed"]


def test_cartpole_time_limit_is_truncation():
    with envs.make("CartPole-v1", num_envs=2, seed=0, max_episode_steps=5) as env:
        episodes, _ = play(env, 30)
    assert episodes and all(ep["truncated"] and ep["length"] == 5 for ep in episodes)


def test_frozen_lake():
    with envs.make("FrozenLake-v1", num_envs=8, seed=0) as env:
        assert (env.obs_shape, env.obs_dtype, env.num_actions) == ((16,), torch.float32, 4)
        obs = env.reset()
        np.testing.assert_array_equal(obs.argmax(1), 0)  # the start state, one-hot
        episodes, _ = play(env, 400)
        # Slippery: moving right from the start goes right, up or down at random.
        after = []
        for _ in range(5):
            env.reset()
            after.append(env.step(np.full(8, 2))[0].argmax(1))
    assert set(np.concatenate(after)) == {0, 1, 4}  # up: stays (wall), right, down
    assert episodes and all(ep["return"] in (0.0, 1.0) and ep["return"] == ep["summed"]
                            for ep in episodes)
    with envs.make("FrozenLake-v1", num_envs=2, seed=0, is_slippery=False) as env:
        env.reset()
        obs = env.step(np.array([2, 1]))[0]  # right, down
    np.testing.assert_array_equal(obs.argmax(1), [1, 4])
    assert ((obs == 0) | (obs == 1)).all() and (obs.sum(1) == 1).all()


def test_gymnasium_env_truncated_by_its_time_limit():
    # MountainCar-v0 through the generic setup: random play never reaches the flag, so
    # each episode ends truncated by the registered limit of 200 steps, then a reset step.
    with envs.make("MountainCar-v0", num_envs=3, seed=0) as env:
        assert (env.obs_shape, env.obs_dtype, env.num_actions, env.frame_stack) == (
            (2,), torch.float32, 3, 1)
        episodes, _ = play(env, 450)
    assert len(episodes) == 3 * 2
    for ep in episodes:
        assert ep["truncated"] and not ep["terminated"]
        assert ep["length"] == ep["steps"] == 200 and ep["return"] == ep["summed"] == -200


def test_gymnasium_env_options():
    # (Terminations through the same setup: CartPole-v1, test_cartpole.)
    with envs.make("Acrobot-v1", num_envs=2, seed=0, max_episode_steps=20, render=True) as env:
        assert (env.obs_shape, env.obs_dtype, env.num_actions) == ((6,), torch.float32, 3)
        episodes, _ = play(env, 50)
        assert env.render().shape == (500, 500, 3)
    assert len(episodes) == 2 * 2
    assert all(ep["truncated"] and ep["length"] == 20 and ep["return"] == -20 for ep in episodes)
    with pytest.raises(TypeError, match="unexpected option.*frame_stack.*max_episode_steps, render"):
        envs.make("Acrobot-v1", frame_stack=4)


class _Screen(gymnasium.Env):
    """Discrete actions, but a 2-D observation: the generic setup refuses it."""
    observation_space = gymnasium.spaces.Box(0, 255, (8, 8), np.uint8)
    action_space = gymnasium.spaces.Discrete(2)


gymnasium.register("dqnfast-test/Screen-v0", entry_point=_Screen)


@pytest.mark.parametrize("env_id, match", [
    ("Pendulum-v1", r"Pendulum-v1 has the action space Box\(-2\.0, 2\.0, \(1,\), float32\); "
                    r"DQN needs a discrete one"),
    ("MountainCarContinuous-v0", r"action space Box\(-1\.0, 1\.0, \(1,\), float32\)"),
    ("FrozenLake8x8-v1", r"observation space Discrete\(64\); expected a 1-D Box"),
    ("Blackjack-v1", r"observation space Tuple\(Discrete\(32\), .*expected a 1-D Box"),
    ("dqnfast-test/Screen-v0", r"observation space Box\(0, 255, \(8, 8\), uint8\); expected a 1-D Box"),
])
def test_gymnasium_env_dqn_cannot_run_is_refused(env_id, match):
    with pytest.raises(ValueError, match=match):
        envs.make(env_id, num_envs=2)


@pytest.mark.skipif(not HAS_PYGAME, reason="CartPole-pixels renders with pygame")
def test_cartpole_pixels():
    with envs.make("CartPole-pixels", num_envs=2, seed=0) as env:
        assert (env.obs_shape, env.obs_dtype, env.num_actions, env.frame_stack) == (
            (4, 84, 84), torch.uint8, 2, 4)
        episodes, shifted = play(env, 120)
        obs = env.reset()
        newest = obs[:, -1]
    assert episodes and all(ep["return"] == ep["length"] for ep in episodes)
    assert shifted > 100
    # White background, the black cart in the lower part of the window.
    assert (np.median(newest, axis=(1, 2)) == 255).all()
    assert (newest[:, 42:].min(axis=(1, 2)) < 40).all()


@pytest.mark.skipif(not HAS_PYGAME, reason="CartPole-pixels renders with pygame")
def test_cartpole_pixels_window_follows_the_cart():
    with envs.make("CartPole-pixels", num_envs=1, seed=0, img_size=(40, 90), frame_stack=2) as env:
        assert env.obs_shape == (2, 40, 90)
        window = env.cart_window
        assert window(400, 600, 0.0) == (160, 210, 160, 180)   # centred
        assert window(400, 600, 1.2) == (160, 360, 160, 180)
        assert window(400, 600, 2.4) == (160, 420, 160, 180)   # clamped right
        assert window(400, 600, -2.4) == (160, 0, 160, 180)    # clamped left
        assert window(400, 600, -0.6) == (160, 135, 160, 180)


# -- the two Atari pipelines -----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("game, steps", [("Pong-v5", 300), ("Breakout-v5", 400)])
def test_dqnfast_preprocessing_matches_native(backend, game, steps):
    """Same seeds, same actions: the dqnfast pipeline (raw max-pooled RGB from the
    backend, dqnfast's gray + area resize + stacks) against the backend's own.

    Gray: envpool and ALE map each frame to gray with ALE's palette table, dqnfast
    with 0.299 R + 0.587 G + 0.114 B; both resize by area. On single frames (the reset
    observations) the two agree within one gray level everywhere. Max-pool: the
    backends take the max of the two last frames after converting them to gray,
    dqnfast (as DeepMind's paper describes) the max of each RGB channel before. The
    second is never darker, and brighter where a moving object overlaps a different
    colour between the two frames (Pong's paddles: up to 16 levels on 0.06% of the
    pixels in 300 steps, measured; Breakout's objects move over black, so never).
    """
    kw = dict(num_envs=4, seed=4, backend=backend, max_episode_frames=1200)
    with envs.make(game, preprocess="native", **kw) as native, \
            envs.make(game, preprocess="dqnfast", **kw) as ours:
        a, b = native.reset(), ours.reset()
        diff = b.astype(int) - a.astype(int)
        assert np.abs(diff).max() <= 1 and (diff == 0).mean() > 0.999
        rng = np.random.default_rng(4)
        diffs = []
        for _ in range(steps):
            actions = rng.integers(0, native.num_actions, 4)
            step_a, step_b = native.step(actions), ours.step(actions)
            for x, y in zip(step_a[1:4], step_b[1:4]):  # same game, step by step
                np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(step_a[4]["reset_step"], step_b[4]["reset_step"])
            diffs.append(step_b[0].astype(np.int16) - step_a[0].astype(np.int16))
    diffs = np.stack(diffs)
    assert diffs.min() >= -1
    assert (diffs == 0).mean() > 0.998 and (np.abs(diffs) <= 1).mean() > 0.998
    if game == "Breakout-v5":
        assert diffs.max() <= 1


@pytest.mark.parametrize("env_id, options", [
    pytest.param("Pong-v5", {"backend": "envpool"}, marks=needs_envpool),
    pytest.param("Pong-v5", {"backend": "ale"}, marks=needs_ale),
    ("CartPole-v1", {}),
    ("FrozenLake-v1", {}),
    ("Acrobot-v1", {}),
])
def test_seeded(env_id, options):
    def trajectory(seed):
        with envs.make(env_id, num_envs=2, seed=seed, **options) as env:
            out = [env.reset()]
            rng = np.random.default_rng(0)
            for _ in range(40):
                out.append(env.step(rng.integers(0, env.num_actions, 2))[0])
            return np.stack(out)
    first = trajectory(7)
    np.testing.assert_array_equal(first, trajectory(7))
    if env_id != "FrozenLake-v1":  # FrozenLake's states are too few to tell seeds apart
        assert not np.array_equal(first, trajectory(8))


# -- feeding the replay buffer ---------------------------------------------------------

@pytest.mark.parametrize("mode", ATARI_MODES[:2])
def test_pong_feeds_the_replay_buffer(mode):
    with envs.make("Pong-v5", num_envs=4, seed=0, max_episode_frames=400, **mode) as env:
        buffer = dqnfast.ReplayBuffer(4 * 500, env.obs_shape, num_envs=env.num_envs,
                                      frame_stack=env.frame_stack, obs_dtype=env.obs_dtype, seed=0)
        obs = env.reset()
        rng = np.random.default_rng(0)
        added = 0
        for _ in range(300):
            actions = rng.integers(0, env.num_actions, env.num_envs)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            live = np.flatnonzero(~info["reset_step"])
            buffer.add(obs[live], actions[live], reward[live], next_obs[live],
                       terminated[live], truncated[live], env_ids=live)
            added += len(live)
            obs = next_obs
    assert len(buffer) == added == 4 * 300 - 4 * 2  # two time limits per env
    batch = buffer.sample(64)
    assert batch.obs.shape == (64, 4, 84, 84) and batch.obs.dtype == torch.uint8
    assert torch.equal(batch.next_obs[:, :-1], batch.obs[:, 1:])


# -- bad input -------------------------------------------------------------------------

def test_unknown_env_id_lists_what_is_supported():
    with pytest.raises(ValueError) as error:
        envs.make("CartPole-v9")  # gymnasium knows v0 and v1
    message = str(error.value)
    assert "CartPole-v1" in message and "FrozenLake-v1" in message and "CartPole-pixels" in message
    if HAS_ENVPOOL or HAS_ALE:
        assert "Pong-v5" in message and "Breakout-v5" in message
    with pytest.raises(ValueError, match="Did you mean 'Pong-v5'"):
        envs.make("Pongg-v5")
    with pytest.raises(TypeError, match="env_id must be a str"):
        envs.make(3)


@pytest.mark.parametrize("env_id, kwargs, error, match", [
    ("CartPole-v1", {"num_envs": 0}, ValueError, "num_envs must be an int >= 1, got 0"),
    ("CartPole-v1", {"num_envs": 2.0}, TypeError, "num_envs must be an int"),
    ("CartPole-v1", {"seed": -1}, ValueError, "seed must be an int >= 0"),
    ("CartPole-v1", {"frame_skip": 4}, TypeError, "unexpected option.*frame_skip.*max_episode_steps"),
    ("CartPole-v1", {"max_episode_steps": 0}, ValueError, "max_episode_steps must be an int >= 1"),
    ("FrozenLake-v1", {"map_name": "5x5"}, ValueError, "map_name must be '4x4' or '8x8'"),
    ("FrozenLake-v1", {"is_slippery": "no"}, TypeError, "is_slippery must be a bool"),
    ("CartPole-pixels", {"img_size": (84,)}, TypeError, r"img_size must be \(height, width\)"),
    ("CartPole-pixels", {"img_size": (200, 84)}, ValueError, r"between \(1, 1\) and \(160, 360\)"),
    ("Pong-v5", {"frame_skip": 0}, ValueError, "frame_skip must be an int >= 1, got 0"),
    ("Pong-v5", {"fire_reset": 1}, TypeError, "fire_reset must be a bool, got int"),
    ("Pong-v5", {"repeat_action_probability": 1.5}, ValueError, r"in \[0, 1\], got 1.5"),
    ("Pong-v5", {"img_size": (84, 200)}, ValueError, r"\(210, 160\)"),
    ("Pong-v5", {"backend": "gym"}, ValueError, "backend must be 'envpool' or 'ale'"),
    ("Pong-v5", {"preprocess": "opencv"}, ValueError, "preprocess must be 'native'.*'dqnfast'"),
    ("Pong-v5", {"sticky": True}, TypeError, "unexpected option.*sticky.*repeat_action_probability"),
])
def test_bad_options(env_id, kwargs, error, match):
    if env_id == "Pong-v5" and not (HAS_ENVPOOL or HAS_ALE):
        pytest.skip("no Atari backend")
    if env_id == "CartPole-pixels" and not HAS_PYGAME:
        pytest.skip("CartPole-pixels renders with pygame")
    with pytest.raises(error, match=match):
        envs.make(env_id, **kwargs)


def test_bad_actions_and_order():
    with envs.make("CartPole-v1", num_envs=3) as env:
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(3, int))
        env.reset()
        with pytest.raises(ValueError, match=r"shape \(3,\), got int64 \(2,\)"):
            env.step(np.zeros(2, np.int64))
        with pytest.raises(ValueError, match=r"ints of shape \(3,\), got float64"):
            env.step(np.zeros(3))
        with pytest.raises(ValueError, match=r"in \[0, 2\), got 0..2"):
            env.step(np.array([0, 1, 2]))
        env.step(torch.tensor([0, 1, 1]))  # tensors are fine
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


# -- stepping on a worker thread ---------------------------------------------------------

@pytest.mark.parametrize("env_id, options", [
    ("CartPole-v1", {}),
    pytest.param("Pong-v5", {"backend": "envpool", "max_episode_frames": 400}, marks=needs_envpool),
    pytest.param("Pong-v5", {"backend": "ale", "preprocess": "dqnfast", "max_episode_frames": 400},
                 marks=needs_ale),
])
def test_step_async_gives_what_step_gives(env_id, options):
    """Same seed, same actions: step_async + step_wait returns exactly what step does,
    across episode ends."""
    results = []
    for use_async in (False, True):
        with envs.make(env_id, num_envs=3, seed=5, **options) as env:
            rng = np.random.default_rng(0)
            steps = [env.reset()]
            for _ in range(130):
                actions = rng.integers(0, env.num_actions, env.num_envs)
                if use_async:
                    env.step_async(actions)
                    steps.append(env.step_wait())
                else:
                    steps.append(env.step(actions))
            results.append(steps)
    assert any(step[4]["episode_done"].any() for step in results[0][1:])
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for plain, threaded in zip(results[0][1:], results[1][1:]):
        for a, b in zip(plain[:4], threaded[:4]):
            np.testing.assert_array_equal(a, b)
        for key in plain[4]:
            np.testing.assert_array_equal(plain[4][key], threaded[4][key])


def test_step_async_order_is_checked():
    with envs.make("CartPole-v1", num_envs=2, seed=0) as env:
        with pytest.raises(RuntimeError, match="reset"):
            env.step_async(np.zeros(2, int))
        env.reset()
        with pytest.raises(RuntimeError, match=r"step_wait\(\) without a step_async"):
            env.step_wait()
        with pytest.raises(ValueError, match=r"in \[0, 2\), got 0..5"):
            env.step_async(np.array([0, 5]))
        with pytest.raises(RuntimeError, match="without a step_async"):
            env.step_wait()  # the rejected call started nothing
        env.step_async(np.array([0, 1]))
        for call in (lambda: env.step(np.array([0, 1])), lambda: env.step_async(np.array([0, 1])),
                     env.reset):
            with pytest.raises(RuntimeError, match=r"step_async\(\) is in flight"):
                call()
        obs, reward, terminated, truncated, info = env.step_wait()
        assert obs.shape == (2, 4) and (reward == 1.0).all()
        env.step_async(np.array([1, 0]))
    # closing with a step in flight lets it finish; then the env refuses work
    for call in (lambda: env.step_async(np.array([0, 1])), env.step_wait):
        with pytest.raises(RuntimeError, match="closed"):
            call()


# -- render ----------------------------------------------------------------------------

def test_render_shows_env_0():
    with envs.make("CartPole-v1", num_envs=2, seed=0, render=True) as env:
        env.reset()
        env.step(np.array([0, 1]))
        frame = env.render()
    assert frame.shape == (400, 600, 3) and frame.dtype == np.uint8
    with envs.make("CartPole-v1", num_envs=1) as env:
        env.reset()
        with pytest.raises(RuntimeError, match="render=True"):
            env.render()


@pytest.mark.parametrize("backend", BACKENDS)
def test_render_atari_raw_screen(backend):
    with envs.make("Pong-v5", num_envs=2, seed=0, backend=backend, preprocess="dqnfast") as env:
        env.reset()
        obs = env.step(np.array([0, 0]))[0]
        frame = env.render()
        assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
        # The screen env 0's newest frame was made from.
        gray = dqnfast.preprocess_frames(frame[None])[0].numpy()
        np.testing.assert_array_equal(gray, obs[0, -1])
    with envs.make("Pong-v5", num_envs=1, backend=backend) as env:
        env.reset()
        with pytest.raises(RuntimeError, match="preprocess='dqnfast'"):
            env.render()
