"""Training settings: one dataclass, each field with its description and its checks, and
the run folder's copy of it (``config.json``). Named presets and the command line that
resolve one are in ``dqnfast.presets``."""
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

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
                                    "see dqnfast/presets.py)")
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
            value, kind = getattr(self, f.name), value_class(f.type)
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

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """A Config from ``dataclasses.asdict`` of one (as config.json and checkpoints
        keep it): JSON and pickles give ``hidden`` back as a list."""
        return cls(**{**values, "hidden": tuple(values["hidden"])})


def value_class(annotation) -> type:
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


CONFIG_JSON = "config.json"


def write_config(run_dir, config: Config) -> None:
    (Path(run_dir) / CONFIG_JSON).write_text(json.dumps(dataclasses.asdict(config), indent=2))


def read_config(run_dir) -> Config:
    path = Path(run_dir) / CONFIG_JSON
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no {CONFIG_JSON}")
    return Config.from_dict(json.loads(path.read_text()))
