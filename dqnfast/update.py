"""The learner's step: sample a batch, the DQN loss, backward, optimizer step, and
the target network's update.

``Update`` runs it eagerly. ``GraphedUpdate`` (CUDA) records the same step once as a
CUDA graph and replays it: a batch-32 update is about a hundred small kernels, and
launching them one by one from Python costs more than running them. With the replay
buffer on the GPU the sampling is inside the graph too; with host storage the buffer
fills its (fixed) pinned-and-copied batch tensors first and the graph reads them.
Neither waits for the GPU: ``UpdateStats`` holds device tensors, read only when logged.

``precision="bfloat16"``: see ``dqnfast.precision``.

The batch brings its own discounts (gamma^k of its n-step windows, 0 past a
termination). With prioritized replay the loss is weighted by the batch's importance
weights and each sampled transition's priority becomes its |TD error|: inside the
graph too when the buffer is on the GPU; after each replay when it is in host memory.
"""
from typing import NamedTuple

import torch
from torch import nn

from dqnfast.loss import dqn_loss
from dqnfast.precision import autocast_of
from dqnfast.replay_buffer import ReplayBuffer


class UpdateStats(NamedTuple):
    loss: torch.Tensor  # scalar TD loss of the last update
    q_taken: torch.Tensor  # (batch,) Q(s, a) of the last update's batch
    td_error: torch.Tensor  # (batch,) Q(s, a) - target of the last update's batch


class Update:
    """One DQN update per call (eager). ``tau < 1`` lerps the target network towards
    the online one after every update; ``sync_target()`` copies it whole (tau 1)."""

    def __init__(self, q_network: nn.Module, target_network: nn.Module,
                 optimizer: torch.optim.Optimizer, replay: ReplayBuffer, *, batch_size: int,
                 loss: str = "huber", double_dqn: bool = False, max_grad_norm=None,
                 tau: float = 1.0, precision: str = "float32"):
        self.autocast = autocast_of(precision, q_network)
        self.q_network, self.target_network = q_network, target_network
        self.optimizer, self.replay = optimizer, replay
        self.batch_size, self.loss, self.double_dqn = batch_size, loss, double_dqn
        self.max_grad_norm, self.tau = max_grad_norm, tau
        self._online = list(q_network.parameters())
        self._target = list(target_network.parameters())
        if [p.shape for p in self._online] != [p.shape for p in self._target]:
            raise ValueError("target_network must have the parameters of q_network")

    def __call__(self) -> UpdateStats:
        batch = self.replay.sample(self.batch_size)
        stats = self._step(batch)
        self._reprioritize(batch, stats)
        return stats

    def sync_target(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self._target, self._online)

    def _reprioritize(self, batch, stats: UpdateStats) -> None:
        if self.replay.prioritized:
            self.replay.update_priorities(batch.index, stats.td_error.abs())

    def _step(self, batch) -> UpdateStats:
        weight = batch.weight if self.replay.prioritized else None
        with self.autocast:
            result = dqn_loss(self.q_network, self.target_network, batch.obs, batch.action,
                              batch.reward, batch.next_obs, batch.terminated,
                              discount=batch.discount, weight=weight, loss=self.loss,
                              double_dqn=self.double_dqn)
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._online, self.max_grad_norm)
        self.optimizer.step()
        if self.tau < 1.0:  # soft update: target <- target + tau (online - target)
            with torch.no_grad():
                torch._foreach_lerp_(self._target, self._online, self.tau)
        return UpdateStats(result.loss.detach(), result.q_taken, result.td_error)


class GraphedUpdate(Update):
    """``Update`` recorded as CUDA graphs: the whole step, and the hard target sync.

    The first ``WARMUP_UPDATES`` calls run eagerly on a side stream (PyTorch's recipe
    for whole-network capture: the optimizer creates its state, the libraries their
    workspaces); the next call captures the step and replays it, and every later call
    only replays it. Every call is one real update. The optimizer must be capturable
    (``capturable=True``), its step counts and learning rate on the GPU.
    """

    WARMUP_UPDATES = 3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not torch.cuda.is_available() or self._online[0].device.type != "cuda":
            raise ValueError("GraphedUpdate needs the networks on a CUDA device, got "
                             f"{self._online[0].device}")
        if not all(group.get("capturable", False) for group in self.optimizer.param_groups):
            raise ValueError(f"GraphedUpdate needs a capturable optimizer: create "
                             f"{type(self.optimizer).__name__}(..., capturable=True)")
        self._sample_inside = self.replay.storage_device.type == "cuda"
        self._calls = 0
        self._side_stream = torch.cuda.Stream()
        self._step_graph = self._sync_graph = None
        self._stats = None

    def __call__(self) -> UpdateStats:
        self._calls += 1
        if self._calls <= self.WARMUP_UPDATES:
            return self._on_side_stream(super().__call__)
        # Host storage: the buffer refills the same batch tensors, which the graph reads.
        batch = None if self._sample_inside else self.replay.sample(self.batch_size)
        if self._step_graph is None:
            self._step_graph = self._capture_step(batch)
        self._step_graph.replay()
        if batch is not None:  # host storage: its priorities are set on the host
            self._reprioritize(batch, self._stats)
        return self._stats

    def sync_target(self) -> None:
        if self._sync_graph is None:
            self._sync_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._sync_graph):
                super().sync_target()
        self._sync_graph.replay()

    def _on_side_stream(self, fn):
        self._side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side_stream):
            result = fn()
        torch.cuda.current_stream().wait_stream(self._side_stream)
        return result

    def _capture_step(self, batch) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        if batch is None:
            graph.register_generator_state(self.replay.generator)
        # _step sets the gradients to None first, so the captured backward allocates
        # them from the graph's own pool and every replay overwrites (not adds to) them.
        with torch.cuda.graph(graph):
            if batch is None:
                batch = self.replay.sample_in_graph(self.batch_size)
                self._stats = self._step(batch)
                self._reprioritize(batch, self._stats)  # GPU storage: captured as well
            else:
                self._stats = self._step(batch)
        return graph
