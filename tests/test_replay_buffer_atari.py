"""The replay buffer on real Atari frames: envpool Pong, 8 environments."""
import numpy as np
import pytest

import dqnfast
from reference import NaiveReplayBuffer, check_against_reference

envpool = pytest.importorskip("envpool")


def test_pong_n_step_transitions_match_full_copies():
    num_envs, per_env, steps = 8, 400, 2500
    # Episodes end by losing (terminated, ~760+ steps at random play) or at 900 steps
    # (truncated); 2500 steps wrap each env's 400 slots six times.
    env = envpool.make("Pong-v5", env_type="gymnasium", num_envs=num_envs, seed=0,
                       max_episode_steps=900)
    rb = dqnfast.ReplayBuffer(num_envs * per_env, (4, 84, 84), num_envs=num_envs,
                              frame_stack=4, seed=0, n_step=3)
    ref = NaiveReplayBuffer.like(rb)
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    resetting = np.zeros(num_envs, bool)
    ends = {"terminated": 0, "truncated": 0}
    for step in range(steps):
        action = rng.integers(0, 6, num_envs)
        next_obs, _, terminated, truncated, _ = env.step(action)
        # envpool spends the step after an episode end on the reset: no transition.
        live = np.flatnonzero(~resetting)
        # Distinct rewards: each n-step sum is checked against the reference's.
        ids = (step * num_envs + np.arange(num_envs)).astype(np.float32)
        rb.add(obs[live], action[live], ids[live], next_obs[live], terminated[live],
               truncated[live], env_ids=live)
        ref.add(obs[live], action[live], ids[live], next_obs[live], terminated[live], live,
                truncated=truncated[live])
        ends["terminated"] += int(terminated.sum())
        ends["truncated"] += int(truncated.sum())
        resetting = terminated | truncated
        obs = next_obs
        if step % 500 == 499:
            check_against_reference(rb, ref, draws=1)
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends
    seen, expected = check_against_reference(rb, ref, draws=3)
    # Episode starts take 4 frames each; the small default frame reserve of a small
    # buffer may let a few of the oldest transitions go early.
    assert 0.99 * num_envs * per_env < len(rb) <= num_envs * per_env
    assert len(seen) > 0.9 * len(expected)
