"""Named presets of training settings, and the command line that resolves a ``Config``.

Precedence: the dataclass defaults, then the preset (chosen by ``--preset`` or by
``--env``), then the flags given on the command line. Each preset names its source and
why it changes a value; the measurements behind the choices are in
``benchmarks/RESULTS.md`` ("Where the presets' values come from").
"""
import argparse
import copy
import dataclasses
from typing import Optional, Tuple

from dqnfast import envs
from dqnfast.cli import add_debug_flag
from dqnfast.config import Config, read_config, value_class

# Atari on a 2-core CPU: the values that depend on the machine, the same for every
# game. One emulator thread and one torch thread, the envs stepping during the update
# (async_envs): two of either fight for the two cores.
ATARI_MACHINE = dict(env_options=dict(num_threads=1), torch_threads=1, async_envs=True)

# Any Atari game (the Nature network on 4 stacked 84x84 frames), by source:
ATARI = dict(
    ATARI_MACHINE,
    # Tianshou's Atari DQN example (github.com/thu-ml/tianshou, examples/atari/atari_dqn.py):
    # 10 envs, one batch-32 update per 10 env steps (one per vector step), 3-step
    # returns, a 100k buffer, Adam 1e-4, a target sync every 500 updates (5,000 env
    # steps), epsilon 1 -> 0.05 over 1M steps.
    num_envs=10, train_frequency=1, batch_size=32, n_step=3, buffer_size=100_000,
    optimizer="adam", learning_rate=1e-4, target_update_interval=5_000, gamma=0.99,
    epsilon_end=0.05, epsilon_decay_steps=1_000_000,
    # Rainbow (Hessel et al. 2018): proportional priorities, alpha 0.5, beta 0.4 -> 1,
    # Adam eps 1.5e-4, learning from 80k frames (20k steps) on.
    prioritized=True, alpha=0.5, beta_start=0.4, beta_end=1.0, adam_eps=1.5e-4,
    learning_starts=20_000,
    # Nature (Mnih et al. 2015): Huber loss, a budget of 10M steps. No reward bound: a
    # run stops early only on one that a game's own preset names.
    loss="huber", total_steps=10_000_000, reward_bound=None,
    # A checkpoint writes the 100k-transition buffer (about 0.7 GB): every 250k steps.
    checkpoint_interval=250_000,
)

# Atari on one GPU (--cuda): the machine's values on top of the Atari ones, provisional
# (H200 timings of 2026-12-04): 32 envs on an emulator thread per core (num_threads 0:
# dqnfast.envs.env_threads), where ALE stepped fastest; a batch of 128 per vector step,
# 4 sampled transitions per env step (Tianshou: 3.2), since a batch-32 update is bound
# by kernel launches and 128 costs about the same.
ATARI_GPU = dict(num_envs=32, env_options=dict(num_threads=0), torch_threads=None,
                 async_envs=True, batch_size=128, train_frequency=1, gradient_steps=1)
ATARI_PRESETS = ("atari", "pong")  # the presets --cuda gives ATARI_GPU's values

# Each preset names its source. Values not given keep the dataclass defaults.
PRESETS = {
    # Any Atari game without a preset of its own (--env <Game>-v5 or ALE/<Game>-v5;
    # named alone, Breakout).
    "atari": dict(ATARI, env="Breakout-v5"),
    # Pong: the Atari values with its own stop (a 100-episode mean of 19.5), epsilon
    # 1 -> 0.01 over 250k steps (Pong needs little exploration, and the training mean
    # that decides "solved" is played with it) and a 3M-step budget.
    "pong": dict(ATARI, env="Pong-v5", epsilon_end=0.01, epsilon_decay_steps=250_000,
                 total_steps=3_000_000, reward_bound=19.5),
    # The book chapter's tuned Pong settings (seed 004): buffer 10k, start 10k, epsilon
    # 1.0 -> 0.02 over 100k frames, Adam 1e-4, batch 32, sync 1000, gamma 0.99, stop at 19.5.
    "pong-chapter": dict(env="Pong-v5", buffer_size=10_000, learning_starts=10_000,
                         batch_size=32, learning_rate=1e-4, epsilon_end=0.02,
                         epsilon_decay_steps=100_000, target_update_interval=1_000, gamma=0.99,
                         reward_bound=19.5, loss="mse"),
    # Mnih et al. 2015 (Nature), Extended Data Table 1: 1M buffer, 50k random steps, one
    # update every 4 steps, target every 10k updates (40k steps), epsilon 1 -> 0.1 over
    # 1M frames, RMSProp 2.5e-4 (centered, eps 0.01), Huber loss, 10M steps.
    "nature": dict(env="Pong-v5", buffer_size=1_000_000, learning_starts=50_000, batch_size=32,
                   optimizer="rmsprop", learning_rate=2.5e-4, adam_eps=0.01, train_frequency=4,
                   target_update_interval=40_000, epsilon_end=0.1, epsilon_decay_steps=1_000_000,
                   total_steps=10_000_000, reward_bound=None),
    # From the PyTorch CartPole tutorial (seed 000: batch 128, gamma 0.99, a 10k buffer)
    # and CleanRL's dqn.py. Changed: one update per 8 env steps (an update per env step
    # solved fewer seeds and cost more); hard syncs every 500 steps (CleanRL's); MSE and
    # a 120-84 MLP (Huber or 128-128 missed 475 on some seeds); Adam 5e-4 and epsilon
    # over 50k steps (learns sooner). A 400k budget: every measured seed solved by 290k.
    "cartpole": dict(env="CartPole-v1", num_envs=8, buffer_size=10_000, learning_starts=5_000,
                     batch_size=128, optimizer="adam", learning_rate=5e-4, tau=1.0,
                     target_update_interval=500, train_frequency=1, loss="mse",
                     hidden=(120, 84), epsilon_end=0.05, epsilon_decay_steps=50_000,
                     total_steps=400_000, reward_bound=475.0, checkpoint_interval=100_000,
                     torch_threads=1),
    # Tabular-sized problem from the course notes (seed 003), slippery FrozenLake with a
    # one-hot state: a small MLP, long exploration (rewards are rare), discount 0.99.
    "frozenlake": dict(env="FrozenLake-v1", num_envs=4, buffer_size=50_000,
                       learning_starts=1_000, batch_size=64, optimizer="adam",
                       learning_rate=1e-3, hidden=(64,), tau=0.01, loss="mse",
                       epsilon_end=0.05, epsilon_decay_steps=50_000, total_steps=100_000,
                       reward_bound=None, checkpoint_interval=50_000, torch_threads=1),
    # The pixel CartPole tutorials (seeds 001, 002), on stacked 84x84 frames through the
    # Nature network, Adam 1e-4, batch 32. Changed: an update per 4 env steps (one per 8
    # stayed at a random policy's return); Double DQN and a sync every 1,000 updates (as
    # the chapter's Pong).
    "cartpole-pixels": dict(env="CartPole-pixels", num_envs=4, buffer_size=100_000,
                            learning_starts=5_000, batch_size=32, optimizer="adam",
                            learning_rate=1e-4, double_dqn=True, target_update_interval=4_000,
                            epsilon_end=0.05, epsilon_decay_steps=50_000,
                            total_steps=200_000, reward_bound=None),
    # Any other gymnasium env with discrete actions and a vector state (Acrobot-v1,
    # MountainCar-v0, LunarLander-v3, ...): CleanRL's dqn.py defaults, unchanged
    # (github.com/vwxyzjn/cleanrl, cleanrl/dqn.py). The reward bound is the env's own
    # gymnasium reward_threshold where its spec names one (resolve sets it).
    "generic": dict(env="Acrobot-v1", num_envs=1, buffer_size=10_000, learning_starts=10_000,
                    batch_size=128, optimizer="adam", learning_rate=2.5e-4, loss="mse",
                    hidden=(120, 84), tau=1.0, target_update_interval=500, train_frequency=10,
                    gamma=0.99, epsilon_end=0.05, epsilon_decay_steps=250_000,
                    total_steps=500_000, torch_threads=1),
}

# --env picks the preset of its environment unless --preset says otherwise.
PRESET_OF_ENV = {"CartPole-v1": "cartpole", "FrozenLake-v1": "frozenlake",
                 "CartPole-pixels": "cartpole-pixels"}
# Atari games with a preset of their own, by ROM name (dqnfast.envs.atari_game).
PRESET_OF_ATARI_GAME = {"pong": "pong"}


def preset_of_env(env: str) -> Optional[str]:
    """The preset ``--env`` picks: the env's own; else for an Atari game its game's, or
    "atari"; else "generic" for the gymnasium ids that ``dqnfast.envs`` runs
    generically; else None (the dataclass defaults)."""
    if env in PRESET_OF_ENV:
        return PRESET_OF_ENV[env]
    game = envs.atari_game(env)
    if game is not None:
        return PRESET_OF_ATARI_GAME.get(game, "atari")
    return "generic" if envs.is_generic_gymnasium(env) else None


def resolve(preset: Optional[str] = None, env: Optional[str] = None, **overrides) -> Config:
    """A Config from the defaults, a preset (named, or the one of ``env``) and overrides."""
    if preset is None:
        preset = preset_of_env(env or Config.env)
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = copy.deepcopy(PRESETS.get(preset, {}))  # presets share their env_options
    if overrides.get("cuda") and preset in ATARI_PRESETS:
        values.update(copy.deepcopy(ATARI_GPU))
    if env is not None:
        values["env"] = env
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
    values.update(overrides)
    if preset == "generic" and "reward_bound" not in overrides:
        values["reward_bound"] = envs.reward_threshold(values["env"])
    values["preset"] = preset
    return Config(**values)


def setting_sources(cfg: Config) -> dict:
    """Where each of ``cfg``'s values came from: its preset, the GPU values of the Atari
    presets, the dataclass default, or given (a flag, an argument or a resumed run's
    own)."""
    preset_values = PRESETS.get(cfg.preset, {})
    gpu_values = ATARI_GPU if cfg.cuda and cfg.preset in ATARI_PRESETS else {}
    sources = {}
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if f.name in gpu_values and value == gpu_values[f.name]:
            sources[f.name] = "GPU values (--cuda)"
        elif f.name in preset_values and value == preset_values[f.name]:
            sources[f.name] = f"preset {cfg.preset}"
        elif cfg.preset == "generic" and f.name == "reward_bound":
            sources[f.name] = "the env's reward_threshold"
        elif f.name not in gpu_values and f.name not in preset_values and value == default:
            sources[f.name] = "default"
        else:
            sources[f.name] = "given"
    return sources


def describe_settings(cfg: Config) -> str:
    """Every setting's value, grouped by where it came from (``setting_sources``)."""
    groups = {}
    for name, source in setting_sources(cfg).items():
        if name != "preset":  # named in the heading
            groups.setdefault(source, []).append(f"{name}={getattr(cfg, name)!r}")
    lines = [f"settings ({cfg.env}, preset {cfg.preset}):"]
    for source, values in groups.items():
        lines.append(f"  {source}: " + " ".join(values))
    return "\n".join(lines)


# What a resumed run may change: it keeps every other setting it started with.
RESUME_OVERRIDES = ("total_steps", "reward_bound", "progress", "checkpoint_interval",
                    "max_minutes")

def parse_args(argv=None) -> Tuple[Config, Optional[str]]:
    """(config, resume run folder or None) from the command line."""
    parser = argparse.ArgumentParser(prog="python -m dqnfast.train",
                                     description="Train a DQN agent.")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    parser.add_argument("--reward", type=float, dest="reward_bound",
                        help=fields["reward_bound"].metadata["help"])
    parser.add_argument("--backend", choices=("envpool", "ale"),
                        help="Atari backend (default: envpool if installed, else ale)")
    add_debug_flag(parser)
    for f in fields.values():
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("reward_bound", "env_options"):
            continue
        described = dict(default=None, help=f.metadata["help"])
        if f.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **described)
        elif f.name == "hidden":
            parser.add_argument(flag, type=int, nargs="+", **described)
        else:
            parser.add_argument(flag, type=_scalar_type(f.type), **described)
    args = vars(parser.parse_args(argv))
    args.pop("debug")  # dqnfast.cli reads it
    resume = args.pop("resume")
    preset, env, backend = args.pop("preset"), args.pop("env"), args.pop("backend")
    overrides = {name: value for name, value in args.items() if value is not None}
    if "hidden" in overrides:
        overrides["hidden"] = tuple(overrides["hidden"])
    if resume is None:
        cfg = resolve(preset, env, **overrides)
        if backend is not None:  # beside the preset's other env options
            cfg = dataclasses.replace(cfg, env_options={**cfg.env_options, "backend": backend})
        return cfg, None
    ignored = sorted(set(overrides) - set(RESUME_OVERRIDES)) + [
        flag for flag, given in (("preset", preset), ("env", env), ("backend", backend)) if given]
    if ignored:
        parser.error(f"--resume keeps the run's settings; only {', '.join(RESUME_OVERRIDES)} "
                     f"may be given with it, got {', '.join(ignored)}")
    return dataclasses.replace(read_config(resume), **overrides), resume


def _scalar_type(annotation) -> type:
    """int for int and Optional[int], likewise float; str otherwise."""
    kind = value_class(annotation)
    return kind if kind in (int, float) else str
