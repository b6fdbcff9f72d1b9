"""The training loop's observations: on the device, each env's newest frame uploaded
and pushed there gives the stacks the env returned, and the transitions added from
them equal those added from the host arrays, bit for bit."""
import numpy as np
import pytest
import torch

import dqnfast
from dqnfast import envs
from dqnfast.observations import DeviceObservations, HostObservations


def play(env, steps, seed):
    """(actions, next_obs, reward, terminated, truncated, reset_step) of random play."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        actions = rng.integers(0, env.num_actions, env.num_envs)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        yield actions, next_obs, reward, terminated, truncated, info["reset_step"]


def buffer_for(env, **kwargs):
    return dqnfast.ReplayBuffer(2_000, env.obs_shape, num_envs=env.num_envs,
                                frame_stack=env.frame_stack, obs_dtype=env.obs_dtype, seed=0,
                                n_step=3, num_actions=env.num_actions, **kwargs)


def test_host_observations_add_what_the_env_returned():
    """The loop's CPU path: every live step added as the env returned it, reset steps
    left out (the README's loop, written out)."""
    env = envs.make("CartPole-v1", num_envs=3, seed=0, max_episode_steps=20)
    observations, replay, reference = HostObservations(), buffer_for(env), buffer_for(env)
    obs = env.reset()
    observations.reset(obs)
    for actions, next_obs, reward, terminated, truncated, reset_step in play(env, 200, 0):
        live = np.flatnonzero(~reset_step)
        observations.update(next_obs, reset_step)
        observations.add_step(replay, actions, reward, terminated, truncated, live)
        reference.add(obs[live], actions[live], reward[live], next_obs[live], terminated[live],
                      truncated[live], env_ids=live)
        obs = next_obs
    assert len(replay) == len(reference) > 0
    for name, tensor in reference.state_dict()["storage"].items():
        assert torch.equal(replay.state_dict()["storage"][name], tensor), name


@pytest.mark.cuda
@pytest.mark.parametrize("env_id, options", [
    ("Pong-v5", dict(backend="ale", max_episode_frames=800)),  # episode ends, lost lives
    ("CartPole-v1", dict(max_episode_steps=20)),  # vector states travel whole
])
def test_device_observations_are_the_env_observations(env_id, options):
    env = envs.make(env_id, num_envs=4, seed=0, **options)
    stream = torch.cuda.Stream()
    observations = DeviceObservations(env.frame_stack, stream)
    on_gpu = buffer_for(env, device="cuda", storage_device="cuda")
    on_host = buffer_for(env)
    obs = env.reset()
    observations.reset(obs)
    resets = 0
    for actions, next_obs, reward, terminated, truncated, reset_step in play(env, 400, 1):
        live = np.flatnonzero(~reset_step)
        resets += int(reset_step.sum())
        observations.update(next_obs, reset_step)
        observations.add_step(on_gpu, actions, reward, terminated, truncated, live)
        on_host.add(obs[live], actions[live], reward[live], next_obs[live], terminated[live],
                    truncated[live], env_ids=live)
        with torch.cuda.stream(stream):
            assert np.array_equal(observations.current.cpu().numpy(), next_obs)
        obs = next_obs
    assert resets > 0  # reset steps (whole stacks uploaded) were part of it
    assert len(on_gpu) == len(on_host) > 0
    for name, tensor in on_host.state_dict()["storage"].items():
        assert torch.equal(on_gpu.state_dict()["storage"][name].cpu(), tensor), name
