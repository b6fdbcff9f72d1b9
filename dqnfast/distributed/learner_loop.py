"""The distributed loop: Ray actors play, this process learns (Ape-X).

Top to bottom: start (or join) Ray, make the actors, ask each for a chunk with the
newest weights; whenever a chunk arrives, add it to the replay buffer, count its
steps and episodes, run the updates the replay ratio owes, and ask that actor for
the next one. Every ``weight_sync_interval`` updates the weights go into Ray's object
store once; actors fetch them with their next request. A chunk from an actor that
died is lost (Ray restarts the actor, which then gets the newest weights); the
learner never waits on one actor while others have chunks ready.
"""
import dataclasses
import itertools
import math
import os
import socket
import sys
import time
from typing import Optional

from dqnfast import envs
from dqnfast.config import Config
from dqnfast.distributed.actor import remote_actor_class, state_dict_of, weights_of
from dqnfast.distributed.chunks import add_chunk
from dqnfast.extras import require_extra
from dqnfast.learner import EnvSpec, Learner, TrainResult, torch_device
from dqnfast.run_log import run_dir_of

_CONNECT_TIMEOUT_S = 5.0


def import_ray():
    require_extra("--actors", "distributed", "ray")
    import ray
    return ray


def check_cpus(cfg: Config, cpus: float, where: str) -> None:
    """Refuses more actors than ``cpus`` (those of ``where``) hold at ``actor_cpus`` each:
    actors beyond the CPUs take turns on them and play slower, each one."""
    if cpus < cfg.actors * cfg.actor_cpus:
        raise ValueError(f"{cfg.actors} actors of {cfg.actor_cpus:g} CPU need "
                         f"{cfg.actors * cfg.actor_cpus:g} CPUs; {where} has {cpus:g}: lower "
                         "--actors, or --actor-cpus to share CPUs among actors (each then "
                         "plays slower)")


def check_reachable(address: Optional[str]) -> None:
    """A clear ConnectionError for a cluster address nothing answers at, within seconds
    (Ray itself may retry for minutes). None, "auto" and "local" are left to Ray."""
    if address in (None, "auto", "local"):
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
    ray = import_ray()
    torch_device(cfg.cuda)
    run_dir = run_dir_of(cfg, resume_dir)
    probe = envs.make(cfg.env, num_envs=1, seed=cfg.seed, **cfg.env_options)
    spec = EnvSpec.of(probe)
    probe.close()
    check_reachable(cfg.ray_address)
    started_ray = not ray.is_initialized()
    if started_ray:
        local_cpus = None
        if cfg.ray_address is None:  # Ray on this machine, with its CPUs and no more
            local_cpus = os.cpu_count() or 1
            check_cpus(cfg, local_cpus, "this machine")
        ray.init(address=cfg.ray_address, num_cpus=local_cpus, include_dashboard=False,
                 logging_level="warning")
    try:
        check_cpus(cfg, ray.cluster_resources().get("CPU", 0), "the Ray cluster")
        # Chunks go into host memory (add_frames reads them where Ray put them); with
        # --cuda the update reads pinned batches copied to the GPU.
        cfg = dataclasses.replace(cfg, replay_on_gpu=False)
        # The last actor explores least (the Ape-X ladder): its episodes say how well
        # the network plays, where the explorers' would hold the mean down; the best
        # model is the weights it played with.
        learner = Learner(cfg, spec, run_dir, buffer_envs=cfg.actors * cfg.num_envs,
                          resume=resume_dir is not None, acts_here=False,
                          judged_actor=cfg.actors - 1)
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
        # Named, so that a person (or a test) can find one:
        # dqnfast-<learner pid>-<fleet of this process>-actor-<i>.
        prefix = f"dqnfast-{os.getpid()}-{next(_FLEET_NUMBERS)}"
        self.actors = []
        try:
            for i in range(cfg.actors):
                self.actors.append(remote_actor.options(name=f"{prefix}-actor-{i}").remote(
                    config, i, cfg.actors, torch_threads=1))
            # ObjectRef of a requested chunk -> (actor index, ref of the weights it plays with)
            self.in_flight = {}
            self.retry_at = {}  # actor index -> when to ask again (after a failure)
            self.failures = [0] * cfg.actors  # consecutive failed requests per actor
            self.weights_version, self.weights = 0, None
            self.lost_chunks = 0
            self.publish_weights()
        except BaseException:
            self.stop()
            raise

    def publish_weights(self) -> None:
        self.weights = self.ray.put(weights_of(self.learner.q_network))  # one put for all
        self.weights_version += 1

    def request(self, index: int) -> None:
        # The ref inside a list: Ray passes it unresolved, and the actor fetches it only
        # when the version is newer than its own.
        ref = self.actors[index].collect.remote(self.weights_version, [self.weights])
        self.in_flight[ref] = (index, self.weights)

    def run(self) -> None:
        cfg, learner, ray = self.cfg, self.learner, self.ray
        for index in range(cfg.actors):
            self.request(index)
        while not learner.done:
            now = time.monotonic()
            for index in [i for i, due in self.retry_at.items() if due <= now]:
                del self.retry_at[index]
                self.request(index)
            # A bounded wait: retries fall due and the time limit is checked meanwhile.
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=_WAIT_S)
            if not ready:
                if not self.in_flight:
                    time.sleep(_WAIT_S)
                learner.end_of_step(None, {})
                continue
            index, weights = self.in_flight.pop(ready[0])
            try:
                chunk = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
                self.lost(index, error)
                learner.end_of_step(None, {})
                continue
            self.failures[index] = 0
            add_chunk(learner.replay, chunk, index * cfg.num_envs)
            learner.advance(chunk.env_steps)
            played_with = _fetcher(ray, weights)
            for episodic_return, length in zip(chunk.episode_returns, chunk.episode_lengths):
                learner.episode(float(episodic_return), int(length), actor=index,
                                played_with=played_with)
            if cfg.ratio_policy == "free":
                self.request(index)  # the actor plays on while the learner updates
            self.catch_up()
            if cfg.ratio_policy == "throttle":
                self.request(index)  # the ratio holds: the actor waited for the updates
            learner.end_of_step(None, {})

    def lost(self, index: int, error: Exception) -> None:
        """A request that failed: its chunk is lost. Ray restarts a dead actor; it is
        asked again after a back-off, and the run stops on an actor that cannot start
        or that fails ``_MAX_FAILURES`` times in a row."""
        self.lost_chunks += 1
        self.failures[index] += 1
        self.learner.log.scalar("actors/lost_chunks", self.lost_chunks, self.learner.step)
        if getattr(error, "actor_init_failed", False) or self.failures[index] >= _MAX_FAILURES:
            raise RuntimeError(f"actor {index} failed {self.failures[index]} time(s) in a row "
                               f"and cannot go on: {error}") from error
        delay = min(_RETRY_S * 2 ** (self.failures[index] - 1), _MAX_RETRY_S)
        print(f"actor {index}: {type(error).__name__}; its chunk is lost, asking again in "
              f"{delay:g} s (Ray restarts a dead actor)", file=sys.stderr, flush=True)
        self.retry_at[index] = time.monotonic() + delay

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


def _fetcher(ray, weights):
    """The state dict behind the ObjectRef ``weights``, fetched only when called: the
    weights a chunk was played with (its episodes began with older ones, if earlier)."""
    return lambda: state_dict_of(ray.get(weights))


_FLEET_NUMBERS = itertools.count()
_WAIT_S = 1.0  # longest wait for a chunk before the loop checks retries and the clock
_RETRY_S, _MAX_RETRY_S = 0.5, 8.0  # back-off before asking a failed actor again
_MAX_FAILURES = 30  # failed requests in a row (about 3 minutes of back-off) end the run
