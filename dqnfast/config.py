"""Training hyperparameters: one dataclass, named presets, and the command line.

Precedence: the dataclass defaults, then the preset (chosen by ``--preset`` or by
``--env``), then the flags given on the command line.
"""
import argparse
import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from dqnfast import envs
from dqnfast.cli import add_debug_flag
from dqnfast.loss import LOSSES
from dqnfast.precision import PRECISIONS


def setting(default, help: str):
    """A ``Config`` field with its description, which ``--help`` shows: one source for
    both. A class as default (``dict``) makes a fresh one per ``Config``."""
    if isinstance(default, type):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    """Every setting of a training run, each with its description (``--help``)."""

    # -- environment --
    env: str = setting("Pong-v5", "environment id: an Atari game as <Game>-v5 or ALE/<Game>-v5, "
                       "CartPole-v1, FrozenLake-v1, CartPole-pixels or a gymnasium id; picks "
                       "its preset")
    num_envs: int = setting(1, "environments stepped together (per actor with --actors)")
    seed: int = setting(1, "seeds the envs, the networks, the buffer and exploration")
    env_options: dict = setting(dict, "options passed to dqnfast.envs.make (presets set them)")
    # -- replay --
    buffer_size: int = setting(10_000, "replay capacity in transitions, all envs together")
    learning_starts: int = setting(10_000, "env steps before the first update")
    batch_size: int = setting(32, "transitions per update")
    n_step: int = setting(1, "n-step returns: targets sum n rewards, then bootstrap (1: one-step "
                          "DQN)")
    prioritized: bool = setting(False, "proportional prioritized replay (Schaul et al. 2016)")
    alpha: float = setting(0.6, "priority exponent: p = (|TD error| + priority_eps) ** alpha")
    beta_start: float = setting(0.4, "importance-weight exponent at the start, annealed "
                                "linearly over the run")
    beta_end: float = setting(1.0, "importance-weight exponent at total_steps (Schaul et al.: "
                              "0.4 -> 1)")
    priority_eps: float = setting(1e-6, "added to |TD error| so that no priority is 0")
    # -- updates --
    gamma: float = setting(0.99, "discount factor")
    optimizer: str = setting("adam", "adam, adamw (amsgrad) or rmsprop (centered, the Nature "
                             "paper's)")
    learning_rate: float = setting(1e-4, "the optimizer's learning rate")
    adam_eps: float = setting(1e-8, "the optimizer's epsilon (Adam's, or RMSProp's)")
    max_grad_norm: Optional[float] = setting(None, "clip gradients to this global norm (none: "
                                             "no clipping)")
    loss: str = setting("huber", "huber or mse, of the TD error")
    double_dqn: bool = setting(False, "Double DQN targets: the online network picks the next "
                               "action, the target network values it")
    dueling: bool = setting(False, "a dueling head: value and advantage streams")
    hidden: Tuple[int, ...] = setting((128, 128), "hidden layer widths of the MLP for vector "
                                      "states")
    train_frequency: int = setting(1, "vector-env steps between rounds of updates")
    gradient_steps: int = setting(1, "updates in each round")
    target_update_interval: int = setting(1_000, "env steps between hard target syncs (tau 1)")
    tau: float = setting(1.0, "1: hard target syncs every target_update_interval; below 1: a "
                         "soft update by tau after each update")
    precision: str = setting("float32", "float32, or bfloat16: convolutions and matrix products "
                             "under autocast, the CNN's head in float32")
    # -- exploration --
    epsilon_schedule: str = setting("linear", "linear or exponential decay of epsilon")
    epsilon_start: float = setting(1.0, "exploration rate at the start")
    epsilon_end: float = setting(0.02, "exploration rate at the end of the decay")
    epsilon_decay_steps: int = setting(100_000, "linear: env steps to reach epsilon_end; "
                                       "exponential: the time constant")
    # -- run --
    total_steps: int = setting(2_000_000, "env steps of the run, all envs together")
    reward_bound: Optional[float] = setting(None, "stop once the 100-episode mean return "
                                            "reaches it")
    cuda: bool = setting(False, "train on the GPU (the Atari presets take their GPU values)")
    cuda_graph: bool = setting(True, "with cuda: replay the update and the target sync as CUDA "
                               "graphs")
    replay_on_gpu: bool = setting(True, "with cuda: keep the replay buffer in GPU memory (else "
                                  "pinned host memory)")
    async_envs: bool = setting(False, "step the envs while the network updates")
    acting_refresh_updates: int = setting(1, "with cuda: updates between snapshots of the "
                                          "learner's weights for the acting copy")
    torch_threads: Optional[int] = setting(None, "CPU threads for torch (none: its default)")
    run_dir: Optional[str] = setting(None, "the run's folder (default: runs/<env>__<preset>__"
                                     "<seed>__<time>)")
    overwrite: bool = setting(False, "let a new run replace the run already in its folder: its "
                              "config, logs, TensorBoard events, best model and checkpoint are "
                              "removed first; without it, such a run is refused")
    checkpoint_interval: int = setting(100_000, "env steps between full checkpoints")
    max_minutes: Optional[float] = setting(None, "wall-clock limit of this run: then a "
                                           "checkpoint, and stop")
    progress: bool = setting(True, "show a progress bar")
    preset: Optional[str] = setting(None, "the preset to start from (default: the env's own; "
                                    "see dqnfast/config.py)")
    # -- distributed (Ape-X on Ray: dqnfast.distributed; num_envs is then per actor) --
    actors: Optional[int] = setting(None, "N Ray actors play (Ape-X); none: the single-process "
                                    "loop")
    ray_address: Optional[str] = setting(None, "a Ray cluster to join, HOST:PORT or auto (none: "
                                         "start Ray on this machine)")
    chunk_steps: int = setting(50, "vector steps an actor plays per chunk it sends")
    weight_sync_interval: int = setting(100, "updates between weight publications to the "
                                        "actors")
    actor_cpus: float = setting(1.0, "CPUs Ray reserves per actor")
    ratio_policy: str = setting("throttle", "throttle: actors wait for the updates the replay "
                                "ratio owes; free: they never wait, and the ratio may drop")

    def __post_init__(self):
        """Every setting checked, so that a bad one stops a run before anything is made."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _value_class(f.type)
            if value is None and type(None) in typing.get_args(f.type):
                continue
            if kind is int:
                smallest = _SMALLEST_INT[f.name]
                if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                    raise ValueError(f"{f.name} must be an int of at least {smallest}, got {value!r}")
            elif kind is float:
                rule, holds = _NUMBER_RULES[f.name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not holds(value):
                    raise ValueError(f"{f.name} must be a number{rule}, got {value!r}")
            elif f.name in _CHOICES:
                if value not in _CHOICES[f.name]:
                    raise ValueError(f"{f.name} must be one of {_CHOICES[f.name]}, got {value!r}")
            elif not isinstance(value, kind):
                raise ValueError(f"{f.name} must be a {kind.__name__}, got {value!r}")
        if not all(isinstance(width, int) and width >= 1 for width in self.hidden):
            raise ValueError(f"hidden must be layer widths, ints of at least 1, got {self.hidden!r}")
        # Distributed: the target syncs once per chunk at most, so a chunk must not span
        # two sync intervals.
        chunk_env_steps = self.num_envs * self.chunk_steps
        if self.actors is not None and self.tau >= 1.0 and chunk_env_steps > self.target_update_interval:
            raise ValueError(f"a chunk of num_envs * chunk_steps = {chunk_env_steps} env steps "
                             f"spans more than target_update_interval={self.target_update_interval}: "
                             "lower chunk_steps")


def _value_class(annotation) -> type:
    """The class of a setting's values: str for str and Optional[str], tuple for
    Tuple[int, ...]."""
    if typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


# What Config.__post_init__ allows beyond the annotations.
_SMALLEST_INT = dict(num_envs=1, seed=0, buffer_size=1, learning_starts=0, batch_size=1, n_step=1,
                     train_frequency=1, gradient_steps=1, target_update_interval=1,
                     epsilon_decay_steps=0, total_steps=1, torch_threads=1, checkpoint_interval=1,
                     actors=1, chunk_steps=1, weight_sync_interval=1, acting_refresh_updates=1)
_NUMBER_RULES = {  # name: (the rule in words, its test)
    **{name: (" in [0, 1]", lambda v: 0.0 <= v <= 1.0)
       for name in ("beta_start", "beta_end", "gamma", "epsilon_start", "epsilon_end")},
    **{name: (" > 0", lambda v: v > 0.0)
       for name in ("priority_eps", "learning_rate", "adam_eps", "max_grad_norm", "max_minutes",
                    "actor_cpus")},
    "alpha": (" >= 0", lambda v: v >= 0.0),
    "tau": (" in (0, 1]", lambda v: 0.0 < v <= 1.0),
    "reward_bound": ("", lambda v: not math.isnan(v)),
}
OPTIMIZERS = ("adam", "adamw", "rmsprop")
EPSILON_SCHEDULES = ("linear", "exponential")
RATIO_POLICIES = ("throttle", "free")
_CHOICES = dict(optimizer=OPTIMIZERS, loss=LOSSES, precision=PRECISIONS,
                epsilon_schedule=EPSILON_SCHEDULES, ratio_policy=RATIO_POLICIES)


# Atari on a 2-core CPU: the values that depend on the machine, the same for every
# game. One envpool (or ALE) thread and one torch thread, the envs stepping during the
# update (async_envs): with two of either, the emulators' and torch's threads fight for
# the two cores, and on a busy machine a batch-32 update took 140-490 ms instead of 24-58.
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

# Atari on one GPU (--cuda): the machine's values on top of the Atari ones. Provisional,
# from timings on one H200 with 16 cores (2026-12-04): ALE through dqnfast.envs ran 14k
# env steps/s with 32 envs on all cores (64 ran slower), and a graphed batch-32 update
# took 0.56 ms, bound by launches, so a batch of 128 costs about the same: one per
# vector step of 32 envs samples 4 transitions per env step (Tianshou: 3.2). The
# emulators take every core (num_threads 0: dqnfast.envs.env_threads), torch keeps its
# default threads.
ATARI_GPU = dict(num_envs=32, env_options=dict(num_threads=0), torch_threads=None,
                 async_envs=True, batch_size=128, train_frequency=1, gradient_steps=1)
ATARI_PRESETS = ("atari", "pong")  # the presets --cuda gives ATARI_GPU's values

# Each preset names its source. Values not given keep the dataclass defaults.
PRESETS = {
    # Any Atari game without a preset of its own (--env <Game>-v5 or ALE/<Game>-v5;
    # named alone, Breakout).
    "atari": dict(ATARI, env="Breakout-v5"),
    # Pong: the Atari values, with Pong's own stopping rule and exploration, chosen for
    # wall-clock time to a 100-episode mean of 19.5 on a 2-core CPU: epsilon 1 -> 0.01
    # over 250k steps (Pong needs little exploration, and the training mean that
    # decides "solved" is played with it), 3M steps. Measured there (README,
    # benchmarks/recorded/): the mean stays near -20.5 for 450-600k steps, then rises
    # (-18.5 at 60 minutes, seed 1); --precision bfloat16, one run: -16.9 at 45 minutes.
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
    # Starts from the PyTorch CartPole tutorial (seed 000): batch 128, gamma 0.99, a
    # 10k buffer. CleanRL's dqn.py settings, run through dqnfast on seeds 1 and 2,
    # solved at 228k and 285k steps (epsilon decays over 250k). What changed, and why:
    # - one update per 8 env steps (8 envs, an update per vector step), near CleanRL's
    #   one per 10: an update per step (4 envs, tau 0.005) solved only 1-2 of 3 seeds
    #   in 150k steps, and each step cost an update;
    # - hard target syncs every 500 steps (CleanRL's) instead of tau 0.005;
    # - MSE loss and CleanRL's 120-84 MLP: with Huber, or with 128-128, 1 seed in 4
    #   missed 475 within 300k steps;
    # - Adam 5e-4 and epsilon 1 -> 0.05 over 50k steps (CleanRL: 2.5e-4 over 250k):
    #   learns sooner, and the 100-episode mean can reach 475 sooner.
    # Measured (README): 9 of 9 seeds solve in 166k-290k steps; the budget leaves room.
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
    # The pixel CartPole tutorials (seeds 001, 002): screen patches around the cart,
    # RMSprop; here stacked 84x84 frames through the Nature network, Adam 1e-4, batch 32.
    # An update per vector step of 4 envs (one per 4 env steps): two runs with one per 8
    # stayed at or below a random policy's return (about 22) through 52k and 84k steps.
    # Double DQN and a target sync every 4k steps (1,000 updates, as the chapter's Pong).
    "cartpole-pixels": dict(env="CartPole-pixels", num_envs=4, buffer_size=100_000,
                            learning_starts=5_000, batch_size=32, optimizer="adam",
                            learning_rate=1e-4, double_dqn=True, target_update_interval=4_000,
                            epsilon_end=0.05, epsilon_decay_steps=50_000,
                            total_steps=200_000, reward_bound=None),
    # Any other gymnasium env with discrete actions and a vector state (Acrobot-v1,
    # MountainCar-v0, LunarLander-v3, ...): CleanRL's dqn.py defaults, unchanged
    # (github.com/vwxyzjn/cleanrl, cleanrl/dqn.py): one env, an update every 10 steps,
    # a 10k buffer, learning from step 10k, batch 128, Adam 2.5e-4, MSE loss, a hard
    # target sync every 500 steps, gamma 0.99, epsilon 1 -> 0.05 over half of the 500k
    # steps, a 120-84 MLP. The reward bound is the env's own: gymnasium's
    # reward_threshold where its spec names one (Acrobot-v1 -100, MountainCar-v0 -110,
    # LunarLander-v3 200), else none (resolve sets it). Measured on one seed (1): Acrobot-v1
    # reached -100 at 217k steps.
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
CONFIG_JSON = "config.json"


def write_config(run_dir, config: Config) -> None:
    (Path(run_dir) / CONFIG_JSON).write_text(json.dumps(dataclasses.asdict(config), indent=2))


def read_config(run_dir) -> Config:
    path = Path(run_dir) / CONFIG_JSON
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no {CONFIG_JSON}")
    values = json.loads(path.read_text())
    return Config(**{**values, "hidden": tuple(values["hidden"])})


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
    kind = _value_class(annotation)
    return kind if kind in (int, float) else str
