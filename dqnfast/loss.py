"""The DQN temporal-difference loss on a batch of transitions, fully vectorized.

For each transition (s, a, r, s', terminated) the target is

    y = r + gamma * max_a' Q_target(s', a')              (Mnih et al. 2015)
    y = r + gamma * Q_target(s', argmax_a' Q(s', a'))    (Double DQN, van Hasselt et al. 2016)
    y = r                                                when terminated

and the loss is the mean over the batch of Huber(Q(s, a) - y) (smooth L1 with
delta 1, the gradient clipping of the Nature paper) or of the squared error.
Only ``terminated`` stops bootstrapping: a transition cut off by a time limit
(truncated) still bootstraps from its ``next_obs``, so callers pass the
environment's ``terminated`` flag, not ``terminated or truncated``.

n-step transitions (``ReplayBuffer(n_step=n)``) carry their own ``discount``, gamma^k
for a window of k steps and 0 where the episode terminated inside it, in place of
gamma; their ``reward`` is the window's discounted sum. Prioritized replay passes
importance ``weight``s: the loss is then the weighted mean. The per-sample TD errors
``Q(s, a) - y`` come back too, for the buffer's new priorities.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

_ELEMENTWISE_LOSSES = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}
LOSSES = tuple(_ELEMENTWISE_LOSSES)  # the names dqn_loss takes


class DQNLoss(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable w.r.t. the online network
    q_taken: torch.Tensor  # (batch,) Q(s, a) of the actions taken, detached: log its mean
    td_error: torch.Tensor  # (batch,) Q(s, a) - y, detached: prioritized replay's priorities


def dqn_loss(q_network: nn.Module, target_network: nn.Module, obs: torch.Tensor,
             action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
             terminated: torch.Tensor, *, gamma: Optional[float] = None,
             discount: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None,
             loss: str = "huber", double_dqn: bool = False) -> DQNLoss:
    """The DQN loss of one batch: one forward of ``q_network`` that keeps its graph,
    and the targets without one (under ``torch.no_grad``).

    ``obs`` and ``next_obs`` are (batch, *obs_shape) of the same dtype (uint8 frames
    go in raw, the networks scale them); ``action`` is int64, ``reward`` floating
    point and ``terminated`` bool, each (batch,), as ``ReplayBuffer.sample`` returns
    them. Give ``gamma`` (one-step transitions) or ``discount``, float (batch,) (the
    batch's own, for n-step transitions), not both. ``weight``, float (batch,),
    weighs each sample's loss (importance weights). ``loss`` is "huber" or "mse".
    With ``double_dqn`` the online network picks the next action and the target
    network values it.
    """
    _check_batch(obs, action, reward, next_obs, terminated, loss)
    _check_discounting(gamma, discount, weight, obs.shape[0])

    # float(): under bfloat16 autocast the targets and the loss are still float32.
    q_taken = q_network(obs).float().gather(1, action.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        # A separate no-grad forward for Double DQN's next actions: concatenating
        # next_obs to obs would make backward run over twice the batch.
        next_q = target_network(next_obs).float()
        if double_dqn:
            next_action = q_network(next_obs).argmax(dim=1, keepdim=True)
            next_value = next_q.gather(1, next_action).squeeze(1)
        else:
            next_value = next_q.amax(dim=1)
        # Zeroing rather than multiplying by (1 - terminated): a terminal target is
        # exactly r even if the value the network gives the state after the end is
        # inf or nan. In place and fused into one add: fewer small ops per update.
        next_value.masked_fill_(terminated, 0.0)
        if discount is None:
            target = torch.add(reward, next_value, alpha=gamma)
        else:
            target = torch.addcmul(reward, discount, next_value)
    elementwise = _ELEMENTWISE_LOSSES[loss]
    if weight is None:
        value = elementwise(q_taken, target)
    else:
        value = (weight * elementwise(q_taken, target, reduction="none")).mean()
    q_taken = q_taken.detach()
    return DQNLoss(value, q_taken, q_taken - target)


def _check_discounting(gamma, discount, weight, batch_size):
    if (gamma is None) == (discount is None):
        raise ValueError("give dqn_loss either gamma (one-step transitions) or discount (the "
                         f"batch's own), not {'both' if gamma is not None else 'neither'}")
    if gamma is not None and not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    for name, tensor in (("discount", discount), ("weight", weight)):
        if tensor is None:
            continue
        if not tensor.dtype.is_floating_point:
            raise TypeError(f"{name} must be floating point, got {tensor.dtype}")
        if tensor.shape != (batch_size,):
            raise ValueError(f"{name} must have shape (batch,) = ({batch_size},) to match obs, "
                             f"got {tuple(tensor.shape)}")


def _check_batch(obs, action, reward, next_obs, terminated, loss):
    """Cheap checks (shapes and dtypes, no data read) against the mistakes that
    would otherwise broadcast silently into a wrong loss, like a (batch, 1) reward."""
    if loss not in _ELEMENTWISE_LOSSES:
        raise ValueError(f"loss must be one of {sorted(_ELEMENTWISE_LOSSES)}, got {loss!r}")
    if obs.shape != next_obs.shape or obs.dtype != next_obs.dtype:
        raise ValueError(f"obs and next_obs must have the same shape and dtype, got "
                         f"{tuple(obs.shape)} {obs.dtype} and {tuple(next_obs.shape)} {next_obs.dtype}")
    if obs.dim() < 2:
        raise ValueError(f"obs must be (batch, *obs_shape), got shape {tuple(obs.shape)}")
    batch_size = obs.shape[0]
    for name, tensor, is_dtype, expected in (
            ("action", action, lambda d: d == torch.int64, "int64"),
            ("reward", reward, lambda d: d.is_floating_point, "floating point"),
            ("terminated", terminated, lambda d: d == torch.bool, "bool")):
        if not is_dtype(tensor.dtype):
            raise TypeError(f"{name} must be {expected}, got {tensor.dtype}")
        if tensor.shape != (batch_size,):
            raise ValueError(f"{name} must have shape (batch,) = ({batch_size},) to match obs, "
                             f"got {tuple(tensor.shape)}")
