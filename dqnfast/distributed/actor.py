"""An Ape-X actor: its own environments and a CPU copy of the Q-network; it plays
epsilon-greedily with its own epsilon and sends chunks of experience with their
first priorities.

``Actor`` is a plain class (tests drive it directly); ``dqnfast.distributed.learner_loop``
runs it as a Ray actor that Ray restarts when it dies.
"""
import os
import sys
import warnings
from typing import Optional

import numpy as np
import torch

from dqnfast import envs
from dqnfast.acting import select_actions
from dqnfast.config import Config
from dqnfast.distributed.chunks import Chunk, ChunkBuilder, n_step_targets, stacks
from dqnfast.learner import EnvSpec
from dqnfast.models import make_q_network


def apex_epsilon(index: int, num_actors: int, base: float = 0.4, exponent: float = 7.0) -> float:
    """Actor ``index``'s epsilon on the Ape-X ladder (Horgan et al. 2018):
    ``base ** (1 + exponent * index / (num_actors - 1))``; ``base`` for a single actor."""
    if num_actors == 1:
        return base
    return base ** (1.0 + exponent * index / (num_actors - 1))


def actor_seed(seed: int, index: int) -> int:
    """Actor ``index``'s env and action seed: apart from the learner's and each other's."""
    return seed + 1_000_003 * (index + 1)


class Actor:
    """Actor ``index`` of ``num_actors``: ``cfg.num_envs`` environments of ``cfg.env``,
    ``cfg.chunk_steps`` vector steps per ``collect`` call; ``torch_threads`` for the
    process (the fleet's actors take one each: one process among many on a machine)."""

    def __init__(self, config: dict, index: int, num_actors: int,
                 torch_threads: Optional[int] = None):
        cfg = Config.from_dict(config)
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.cfg, self.index = cfg, index
        self.epsilon = apex_epsilon(index, num_actors)
        seed = actor_seed(cfg.seed, index)
        if _restarted():  # not the first run's episodes and exploration again
            seed += os.getpid()
        self.env = envs.make(cfg.env, num_envs=cfg.num_envs, seed=seed, **cfg.env_options)
        self.spec = EnvSpec.of(self.env)
        self.q_network = make_q_network(self.spec.obs_shape, self.spec.obs_dtype,
                                        self.spec.num_actions, dueling=cfg.dueling,
                                        hidden=cfg.hidden).eval()
        self.weights_version = -1  # none received yet
        self.rng = np.random.default_rng(seed)
        self.builder = ChunkBuilder(cfg.num_envs, self.spec.frame_stack, cfg.n_step)
        self._obs = self.env.reset()
        self.builder.start(self._obs)

    def env_spec(self) -> EnvSpec:
        return self.spec

    def collect(self, weights_version: int, weights: list) -> Chunk:
        """Plays ``chunk_steps`` vector steps and returns them as a chunk. ``weights``
        is a one-element list: the learner's newest weights (a dict of numpy arrays, or
        a Ray ObjectRef to one, fetched only when ``weights_version`` is newer than the
        actor's). An env that fails ends this process, so that Ray restarts the actor."""
        if weights_version > self.weights_version:
            self._load_weights(weights[0])
            self.weights_version = weights_version
        try:
            return self._play()
        except Exception as error:  # noqa: BLE001 (any env failure: restart from scratch)
            print(f"actor {self.index}: {type(error).__name__}: {error}; exiting so that Ray "
                  "restarts it", file=sys.stderr, flush=True)
            os._exit(1)

    def _load_weights(self, weights) -> None:
        if not isinstance(weights, dict):  # an ObjectRef: fetch the newest weights
            import ray
            weights = ray.get(weights)
        self.q_network.load_state_dict(state_dict_of(weights))

    def _play(self) -> Chunk:
        cfg, env, obs = self.cfg, self.env, self._obs
        for _ in range(cfg.chunk_steps):
            actions = select_actions(self.q_network, obs, self.epsilon, env.num_actions,
                                     torch.device("cpu"), self.rng, cfg.precision)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            self.builder.step(actions, reward, terminated, truncated, next_obs,
                              info["reset_step"], info["episode_done"],
                              info["episode_return"], info["episode_length"])
            obs = next_obs
        self._obs = obs
        return self.builder.finish(self.priorities if cfg.prioritized else None)

    def priorities(self, chunk: Chunk) -> np.ndarray:
        """|n-step TD error| of each transition under the actor's network (Ape-X)."""
        if not len(chunk):
            return np.zeros(0, np.float32)
        obs, next_obs = stacks(chunk, self.spec.frame_stack)
        with torch.no_grad():
            q_taken = self.q_network(torch.from_numpy(obs)).gather(
                1, torch.from_numpy(chunk.action)[:, None])[:, 0].double().numpy()
            next_values = self.q_network(torch.from_numpy(next_obs)).amax(dim=1).double().numpy()
        targets = n_step_targets(chunk, next_values, self.cfg.gamma, self.cfg.n_step)
        return np.abs(q_taken - targets).astype(np.float32)

    def close(self) -> None:
        self.env.close()


def _restarted() -> bool:
    """Whether this process is a Ray actor that Ray restarted after it died."""
    try:
        import ray
    except ImportError:
        return False
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return False  # not inside a Ray actor (a test drives the class directly)
    with warnings.catch_warnings():  # Ray 2.60 reads a deprecated attribute of its own here
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def remote_actor_class(ray, num_cpus: float) -> type:
    """``Actor`` as a Ray actor that Ray restarts, without limit, when its process dies."""
    return ray.remote(num_cpus=num_cpus, max_restarts=-1, max_task_retries=0)(Actor)


def weights_of(q_network) -> dict:
    """The Q-network's weights as numpy arrays (what ``collect`` takes)."""
    return {name: value.detach().cpu().numpy() for name, value in q_network.state_dict().items()}


def state_dict_of(weights: dict) -> dict:
    """``weights_of``'s arrays back as a state dict of CPU tensors (copied: Ray's arrays
    are read-only views of its object store)."""
    return {name: torch.from_numpy(np.array(value)) for name, value in weights.items()}
