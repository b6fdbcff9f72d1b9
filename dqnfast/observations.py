"""The environments' current observations, where the training loop acts on them and
adds them to the replay buffer from.

``HostObservations`` keeps the arrays the environments return (the CPU, or a GPU run
whose replay buffer is in host memory). ``DeviceObservations`` keeps them in GPU
memory beside a GPU replay buffer: per step only each environment's newest frame
travels to the GPU, and adding reads nothing back.
"""
from typing import Optional

import numpy as np
import torch

from dqnfast.preprocess import push_frames
from dqnfast.replay_buffer import ReplayBuffer


class HostObservations:
    """The observations as the environments return them (numpy)."""

    def __init__(self):
        self.current: Optional[np.ndarray] = None
        self._previous: Optional[np.ndarray] = None

    def reset(self, obs: np.ndarray) -> None:
        self.current = obs

    def update(self, next_obs: np.ndarray, reset_step: np.ndarray) -> None:
        self._previous, self.current = self.current, next_obs

    def add_step(self, replay: ReplayBuffer, actions, reward, terminated, truncated,
                 live: np.ndarray) -> None:
        """Adds the step from the previous to the current observations of the ``live``
        environments (those whose step was a transition, not a reset)."""
        replay.add(self._previous[live], actions[live], reward[live], self.current[live],
                   terminated[live], truncated[live], env_ids=live)


class DeviceObservations:
    """The observations in GPU memory, for acting on ``stream`` and adding to a GPU
    replay buffer on the learner's stream.

    With stacked frames, an environment's stack after a step that is not a reset step
    is its previous stack with the newest frame pushed in (``dqnfast.envs``
    guarantees ``next_obs[:, :-1] == obs[:, 1:]`` there), so only the newest frames are
    uploaded and pushed on the GPU; an environment on a reset step gets its whole new
    stack. Vector states (no frame stack) travel whole. Every upload (frames, and the
    step's actions, rewards and flags for the buffer) goes through a pinned staging
    buffer on ``stream``: a copy from pageable memory would wait for the work queued
    on its stream, the learner's updates among it. A staging buffer is refilled only
    once the previous step's uploads are done.
    """

    def __init__(self, frame_stack: int, stream: torch.cuda.Stream):
        self.stream, self.frame_stack = stream, frame_stack
        self.device = torch.device("cuda", stream.device_index)
        self.current: Optional[torch.Tensor] = None
        self._previous: Optional[torch.Tensor] = None
        self._staging = {}  # pinned host buffers, by what they carry
        self._uploaded: Optional[torch.cuda.Event] = None  # the last step's uploads

    def _upload(self, name: str, array: np.ndarray) -> torch.Tensor:
        """``array`` on the GPU, copied on ``stream`` through the staging buffer ``name``."""
        staging = self._staging.get(name)
        if staging is None or staging.shape != array.shape:
            staging = self._staging[name] = torch.from_numpy(np.empty_like(array)).pin_memory()
        staging.numpy()[...] = array
        with torch.cuda.stream(self.stream):
            return staging.to(self.device, non_blocking=True)

    def _next_step(self) -> None:
        """Waits until the last step's uploads are done: its staging buffers are free."""
        if self._uploaded is not None:
            self._uploaded.synchronize()

    def _uploads_queued(self) -> None:
        self._uploaded = torch.cuda.Event()
        self._uploaded.record(self.stream)

    def reset(self, obs: np.ndarray) -> None:
        self._next_step()
        self.current = self._upload("obs", obs)
        self._uploads_queued()

    def update(self, next_obs: np.ndarray, reset_step: np.ndarray) -> None:
        self._next_step()
        self._previous = self.current
        if self.frame_stack == 1:
            self.current = self._upload("obs", next_obs)
        else:
            newest = self._upload("newest", np.ascontiguousarray(next_obs[:, -1]))
            with torch.cuda.stream(self.stream):
                self.current = push_frames(self._previous, newest)
            resets = np.flatnonzero(reset_step)
            if len(resets):
                stacks = self._upload("reset_stacks", next_obs[resets])
                rows = self._upload("reset_rows", resets)
                with torch.cuda.stream(self.stream):
                    self.current.index_copy_(0, rows, stacks)
        self._uploads_queued()

    def add_step(self, replay: ReplayBuffer, actions, reward, terminated, truncated,
                 live: np.ndarray) -> None:
        """As ``HostObservations.add_step``, on the current (the learner's) stream, after
        this step's uploads; nothing waits for the GPU, nothing is read back."""
        obs, next_obs = self._previous, self.current
        fields = [self._upload(name, np.ascontiguousarray(values[live])) for name, values in (
            ("action", actions), ("reward", reward), ("terminated", terminated),
            ("truncated", truncated))]
        if len(live) < len(obs):
            rows = self._upload("live", live)
            with torch.cuda.stream(self.stream):
                obs, next_obs = obs.index_select(0, rows), next_obs.index_select(0, rows)
        self._uploads_queued()
        learner_stream = torch.cuda.current_stream(self.device)
        learner_stream.wait_stream(self.stream)
        for tensor in (obs, next_obs, *fields):
            # Made on the acting stream, read on the learner's: not reused before that.
            tensor.record_stream(learner_stream)
        replay.add(obs, *fields[:2], next_obs, *fields[2:], env_ids=live)


def observations_for(env, replay: ReplayBuffer, acting):
    """On the GPU beside a GPU replay buffer (acting on the acting stream), else as the
    environments return them."""
    if replay.storage_device.type == "cuda" and acting.on_gpu:
        return DeviceObservations(env.frame_stack, acting.stream)
    return HostObservations()
