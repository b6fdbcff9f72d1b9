"""Train a DQN agent: ``python -m dqnfast.train [--cuda] [--env ENV] [--preset NAME] ...``

The loop, top to bottom: act epsilon-greedily in all environments at once, store
the transitions in the compiled replay buffer, update the Q-network on sampled
batches, sync the target network, log, checkpoint. Settings: ``dqnfast.config``.
"""
import importlib.util
import math
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dqnfast import envs
from dqnfast.config import Config, parse_args
from dqnfast.learner import EnvSpec, Learner, TrainResult, training_device
from dqnfast.update import autocast_of

# What the loop imports beyond dqnfast's own dependencies: the `train` extra installs them.
TRAIN_EXTRA_MODULES = ("gymnasium", "tqdm")


def epsilon_at(cfg: Config, step: int) -> float:
    if cfg.epsilon_schedule == "linear":
        fraction = min(step / max(cfg.epsilon_decay_steps, 1), 1.0)
        return cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)
    if cfg.epsilon_schedule == "exponential":  # the CartPole tutorial's decay
        return cfg.epsilon_end + (cfg.epsilon_start - cfg.epsilon_end) * math.exp(
            -step / max(cfg.epsilon_decay_steps, 1))
    raise ValueError(f"epsilon_schedule must be 'linear' or 'exponential', got {cfg.epsilon_schedule!r}")


def select_actions(q_network, obs: np.ndarray, epsilon: float, num_actions: int,
                   device: torch.device, rng: np.random.Generator,
                   precision: str = "float32") -> np.ndarray:
    """Epsilon-greedy for all environments with one batched forward (none if all explore)."""
    explore = rng.random(len(obs)) < epsilon
    actions = rng.integers(0, num_actions, len(obs))
    if not explore.all():
        with torch.no_grad(), autocast_of(precision, q_network):
            greedy = q_network(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
        actions = np.where(explore, actions, greedy)
    return actions


def default_run_dir(cfg: Config) -> Path:
    return Path(cfg.run_dir or Path("runs") / (
        f"{cfg.env}__{cfg.preset}__{cfg.seed}__{datetime.now():%Y%m%d-%H%M%S}"))


def train(cfg: Config, resume_dir: Optional[str] = None) -> TrainResult:
    """The single-process loop; with ``cfg.actors`` the distributed one
    (``dqnfast.distributed``)."""
    if cfg.actors is not None:
        from dqnfast.distributed import train_distributed
        return train_distributed(cfg, resume_dir)
    # -- set-up ------------------------------------------------------------------------
    device = training_device(cfg)
    # First the env: one that DQN cannot run (continuous actions, say) stops here,
    # before a run folder is made.
    env = envs.make(cfg.env, num_envs=cfg.num_envs, seed=cfg.seed, **cfg.env_options)
    learner = Learner(cfg, EnvSpec.of(env), Path(resume_dir or default_run_dir(cfg)),
                      buffer_envs=env.num_envs, resume=resume_dir is not None)
    q_network, replay = learner.q_network, learner.replay
    rng = np.random.default_rng(cfg.seed)
    if resume_dir is not None:
        rng.bit_generator.state = learner.resumed["action_rng"]

    # -- the loop ------------------------------------------------------------------------
    obs = env.reset()
    iteration = 0
    while not learner.done:
        epsilon = epsilon_at(cfg, learner.step)
        actions = select_actions(q_network, obs, epsilon, env.num_actions, device, rng,
                                 cfg.precision)
        if cfg.async_envs:
            env.step_async(actions)  # the envs step while the network updates
        else:
            stepped = env.step(actions)
        # The update samples what was stored up to the previous step.
        if learner.learning and iteration % cfg.train_frequency == 0:
            for _ in range(cfg.gradient_steps):
                learner.learn()
        next_obs, reward, terminated, truncated, info = env.step_wait() if cfg.async_envs else stepped
        # A step that only reset an environment (next-step autoreset) is no transition.
        live = np.flatnonzero(~info["reset_step"])
        replay.add(obs[live], actions[live], reward[live], next_obs[live], terminated[live],
                   truncated[live], env_ids=live)
        obs = next_obs
        learner.advance(env.num_envs)
        iteration += 1
        for i in np.flatnonzero(info["episode_done"]):
            learner.episode(float(info["episode_return"][i]), int(info["episode_length"][i]))
        learner.end_of_step(epsilon, {"action_rng": rng.bit_generator.state})

    env.close()
    return learner.close()


def require_train_extra() -> None:
    missing = [m for m in TRAIN_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"python -m dqnfast.train needs the 'train' extra (missing: "
                         f"{', '.join(missing)}): pip install --no-build-isolation -e '.[train]' "
                         "in the dqnfast source tree (or: make setup)")


def main(argv=None) -> None:
    require_train_extra()
    cfg, resume_dir = parse_args(argv)
    train(cfg, resume_dir)


if __name__ == "__main__":
    main()
