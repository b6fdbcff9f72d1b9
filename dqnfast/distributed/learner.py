"""The distributed loop: Ray actors play, this process learns (Ape-X).

Top to bottom: start (or join) Ray, make the actors, ask each for a chunk with the
newest weights; whenever a chunk arrives, add it to the replay buffer, count its
steps and episodes, run the updates the replay ratio owes, and ask that actor for
the next one. Every ``weight_sync_interval`` updates the weights go into Ray's object
store once; actors fetch them with their next request. A chunk from an actor that
died is lost (Ray restarts the actor, which then gets the newest weights); the
learner never waits on one actor while others have chunks ready.
"""
import math
import os
import socket
import sys
from pathlib import Path
from typing import Optional

from dqnfast import envs
from dqnfast.config import Config
from dqnfast.distributed.actor import remote_actor_class, weights_of
from dqnfast.distributed.chunks import add_chunk
from dqnfast.learner import EnvSpec, Learner, TrainResult, training_device

RATIO_POLICIES = ("throttle", "free")
_CONNECT_TIMEOUT_S = 5.0


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("--actors needs Ray, in the 'distributed' extra: pip install "
                          "--no-build-isolation -e '.[distributed]' in the dqnfast source "
                          "tree") from None
    return ray


def check_config(cfg: Config) -> None:
    """The distributed settings, checked before anything starts."""
    for name in ("actors", "chunk_steps", "weight_sync_interval"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int of at least 1, got {value!r}")
    if not cfg.actor_cpus > 0:
        raise ValueError(f"actor_cpus must be positive, got {cfg.actor_cpus!r}")
    if cfg.ratio_policy not in RATIO_POLICIES:
        raise ValueError(f"ratio_policy must be one of {RATIO_POLICIES}, got {cfg.ratio_policy!r}")


def check_reachable(address: Optional[str]) -> None:
    """A clear ConnectionError for a cluster address nothing answers at, within seconds
    (Ray itself may retry for minutes). None and "auto" are left to Ray."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray_address must be HOST:PORT, ray://HOST:PORT or 'auto', got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r}: {error}") from None


def updates_owed(cfg: Config, step: int) -> int:
    """Updates the single-process loop would have made by env step ``step``:
    ``gradient_steps`` per ``train_frequency`` vector steps of ``num_envs`` envs, from
    ``learning_starts`` on."""
    per_step = cfg.gradient_steps / (cfg.train_frequency * cfg.num_envs)
    return math.floor(max(step - cfg.learning_starts, 0) * per_step)


def train_distributed(cfg: Config, resume_dir: Optional[str] = None) -> TrainResult:
    from dqnfast.train import default_run_dir

    check_config(cfg)
    ray = import_ray()
    training_device(cfg)
    probe = envs.make(cfg.env, num_envs=1, seed=cfg.seed, **cfg.env_options)
    spec = EnvSpec.of(probe)
    probe.close()
    check_reachable(cfg.ray_address)
    started_ray = not ray.is_initialized()
    if started_ray:
        local_cpus = None if cfg.ray_address else max(os.cpu_count() or 1,
                                                      math.ceil(cfg.actors * cfg.actor_cpus))
        ray.init(address=cfg.ray_address, num_cpus=local_cpus, include_dashboard=False,
                 logging_level="warning")
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < cfg.actors * cfg.actor_cpus:
            raise ValueError(f"{cfg.actors} actors of {cfg.actor_cpus:g} CPU need "
                             f"{cfg.actors * cfg.actor_cpus:g} CPUs; the Ray cluster has {cpus:g}")
        learner = Learner(cfg, spec, Path(resume_dir or default_run_dir(cfg)),
                          buffer_envs=cfg.actors * cfg.num_envs, resume=resume_dir is not None)
        fleet = _Fleet(ray, cfg, learner)
        try:
            fleet.run()
        finally:
            fleet.stop()
        return learner.close()
    finally:
        if started_ray:
            ray.shutdown()


class _Fleet:
    """The actors, their requests in flight, and the weights they fetch."""

    def __init__(self, ray, cfg: Config, learner: Learner):
        self.ray, self.cfg, self.learner = ray, cfg, learner
        remote_actor = remote_actor_class(ray, cfg.actor_cpus)
        config = {**vars(cfg), "hidden": list(cfg.hidden)}
        # Named, so that a person (or a test) can find one: dqnfast-<learner pid>-actor-<i>.
        self.actors = [remote_actor.options(name=f"dqnfast-{os.getpid()}-actor-{i}").remote(
            config, i, cfg.actors, torch_threads=1) for i in range(cfg.actors)]
        self.in_flight = {}  # ObjectRef of a requested chunk -> actor index
        self.weights_version, self.weights = 0, None
        self.lost_chunks = 0
        self.publish_weights()

    def publish_weights(self) -> None:
        self.weights = self.ray.put(weights_of(self.learner.q_network))  # one put for all
        self.weights_version += 1

    def request(self, index: int) -> None:
        # The ref inside a list: Ray passes it unresolved, and the actor fetches it only
        # when the version is newer than its own.
        ref = self.actors[index].collect.remote(self.weights_version, [self.weights])
        self.in_flight[ref] = index

    def run(self) -> None:
        cfg, learner, ray = self.cfg, self.learner, self.ray
        for index in range(cfg.actors):
            self.request(index)
        while not learner.done:
            [ref], _ = ray.wait(list(self.in_flight), num_returns=1)
            index = self.in_flight.pop(ref)
            try:
                chunk = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                # Ray restarts the actor; the request below waits for it.
                self.lost_chunks += 1
                learner.log.scalar("actors/lost_chunks", self.lost_chunks, learner.step)
                print(f"actor {index} died ({type(error).__name__}); its chunk is lost, Ray "
                      "restarts it", file=sys.stderr, flush=True)
                self.request(index)
                continue
            add_chunk(learner.replay, chunk, index * cfg.num_envs)
            learner.advance(chunk.env_steps)
            for episodic_return, length in zip(chunk.episode_returns, chunk.episode_lengths):
                learner.episode(float(episodic_return), int(length), actor=index)
            if cfg.ratio_policy == "free":
                self.request(index)  # the actor plays on while the learner updates
            self.catch_up()
            if cfg.ratio_policy == "throttle":
                self.request(index)  # the ratio holds: the actor waited for the updates
            learner.end_of_step(None, {})

    def catch_up(self) -> None:
        """The updates the replay ratio owes; "free" stops early when a chunk is ready."""
        learner, cfg = self.learner, self.cfg
        if not learner.learning:
            return
        owed = updates_owed(cfg, learner.step)
        while learner.updates < owed:
            learner.learn()
            if learner.updates % cfg.weight_sync_interval == 0:
                self.publish_weights()
            if cfg.ratio_policy == "free" and self.ray.wait(list(self.in_flight), timeout=0)[0]:
                return

    def stop(self) -> None:
        for actor in self.actors:  # their requests in flight go with them
            self.ray.kill(actor)
