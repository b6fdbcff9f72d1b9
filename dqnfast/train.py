"""Train a DQN agent: ``python -m dqnfast.train [--cuda] [--env ENV] [--preset NAME] ...``

The loop, top to bottom: act epsilon-greedily in all environments at once, start the
environments' step, run the updates owed while they step, store the step's
transitions in the compiled replay buffer; the learner syncs the target network,
logs and checkpoints. Settings: ``dqnfast.config``, ``dqnfast.presets``; which weights act:
``dqnfast.acting``; where observations live: ``dqnfast.observations``.

Which transitions an update may sample: those stored up to the previous vector step
(the updates of a step run before its transitions are added), on the CPU and on a
GPU alike, so a seeded CPU run gives the same results with or without
``--async-envs``.
"""
from typing import Optional

import numpy as np

from dqnfast import envs
from dqnfast.acting import epsilon_at
from dqnfast.cli import entry_point
from dqnfast.config import Config
from dqnfast.presets import describe_settings, parse_args
from dqnfast.extras import require_extra
from dqnfast.learner import EnvSpec, Learner, TrainResult, torch_device
from dqnfast.observations import observations_for
from dqnfast.run_log import run_dir_of

# What the loop imports beyond dqnfast's own dependencies: the `train` extra installs them.
TRAIN_EXTRA_MODULES = ("gymnasium", "tqdm")


def train(cfg: Config, resume_dir: Optional[str] = None) -> TrainResult:
    """The single-process loop; with ``cfg.actors`` the distributed one
    (``dqnfast.distributed``)."""
    if cfg.actors is not None:
        from dqnfast.distributed import train_distributed
        return train_distributed(cfg, resume_dir)
    # -- set-up ------------------------------------------------------------------------
    torch_device(cfg.cuda)
    run_dir = run_dir_of(cfg, resume_dir)
    # Then the env: one that DQN cannot run (continuous actions, say) stops here,
    # before a run folder is made.
    env = envs.make(cfg.env, num_envs=cfg.num_envs, seed=cfg.seed, **cfg.env_options)
    try:
        learner = Learner(cfg, EnvSpec.of(env), run_dir, buffer_envs=env.num_envs,
                          resume=resume_dir is not None)
    except BaseException:  # a checkpoint that does not load, say: the env's threads end too
        env.close()
        raise
    print(describe_settings(cfg), flush=True)
    acting, shares = learner.acting, learner.time_shares
    observations = observations_for(env, learner.replay, acting)
    rng = np.random.default_rng(cfg.seed)
    if resume_dir is not None:
        rng.bit_generator.state = learner.resumed["action_rng"]

    # -- the loop ------------------------------------------------------------------------
    observations.reset(env.reset())
    iteration = 0
    while not learner.done:
        epsilon = epsilon_at(cfg, learner.step)
        with shares.measure("acting"):
            actions = acting.act(observations.current, epsilon, env.num_actions, rng,
                                 cfg.precision)
        with shares.measure("env_step"):
            if cfg.async_envs:
                env.step_async(actions)  # the envs step while the network updates
            else:
                stepped = env.step(actions)
        if learner.learning and iteration % cfg.train_frequency == 0:
            learner.learn(cfg.gradient_steps)
        with shares.measure("env_step"):
            next_obs, reward, terminated, truncated, info = (
                env.step_wait() if cfg.async_envs else stepped)
        with shares.measure("adding"):
            observations.update(next_obs, info["reset_step"])
            # A step that only reset an environment (next-step autoreset) is no transition.
            live = np.flatnonzero(~info["reset_step"])
            observations.add_step(learner.replay, actions, reward, terminated, truncated, live)
        iteration += 1
        with shares.measure("logging"):
            learner.advance(env.num_envs)
            for i in np.flatnonzero(info["episode_done"]):
                learner.episode(float(info["episode_return"][i]), int(info["episode_length"][i]))
            learner.end_of_step(epsilon, {"action_rng": rng.bit_generator.state})

    env.close()
    return learner.close()


@entry_point
def main(argv=None) -> None:
    require_extra("python -m dqnfast.train", "train", *TRAIN_EXTRA_MODULES)
    cfg, resume_dir = parse_args(argv)
    train(cfg, resume_dir)


if __name__ == "__main__":
    main()
