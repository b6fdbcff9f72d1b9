"""Q-networks: the Nature DQN for stacked Atari frames and an MLP for vector states.

Both map a batch of observations to one Q-value per action, shape (batch, num_actions),
and can end in a dueling head instead of a plain linear layer.
"""
from typing import Sequence

import torch
from torch import nn


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, "Dueling Network
    Architectures for Deep Reinforcement Learning", eq. 9).

    Subtracting the mean advantage makes V and A identifiable: the mean over actions of
    Q is exactly V.
    """

    def __init__(self, value: nn.Module, advantage: nn.Module):
        super().__init__()
        self.value = value
        self.advantage = advantage

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


def _q_head(in_features: int, hidden: int, num_actions: int, dueling: bool) -> nn.Module:
    """Features to Q-values; ``hidden=0`` means a bare linear layer per stream."""

    def stream(out_features):
        if hidden == 0:
            return nn.Linear(in_features, out_features)
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, out_features))

    if dueling:
        return DuelingHead(value=stream(1), advantage=stream(num_actions))
    return stream(num_actions)


class NatureDQN(nn.Module):
    """The convolutional Q-network of Mnih et al. 2015, "Human-level control through
    deep reinforcement learning" (Nature 518): conv 32x8x8 stride 4, conv 64x4x4
    stride 2, conv 64x3x3 stride 1, fully connected 512, all with ReLU, then one
    output per action. With ``dueling=True`` the 512-unit layer and the output are
    split into a value and an advantage stream, as in Wang et al. 2016.

    Input: (batch, *obs_shape). uint8 frames (0..255, as a replay buffer stores them)
    are scaled to [0, 1] here, so callers pass raw batches and the scaling happens on
    the device the network runs on; floating-point input is taken as already scaled.

    With ``channels_last`` (default) the convolutions run channels-last, weights and
    input: on the CPU (oneDNN) a batch-32 update is faster, the backward pass most of
    the gain (``benchmarks/RESULTS.md``, group "update-atari-cnn"). The values are the
    same computation; only the memory order differs, so state dicts load either way.
    """

    def __init__(self, obs_shape: Sequence[int], num_actions: int, *, dueling: bool = False,
                 channels_last: bool = True):
        super().__init__()
        obs_shape = tuple(obs_shape)
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be (channels, height, width), got {obs_shape}")
        self.features = nn.Sequential(
            nn.Conv2d(obs_shape[0], 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        # The flattened size depends on the input size (3136 for 84x84): measure it
        # once with a dummy frame rather than hard-coding it.
        with torch.no_grad():
            num_features = self.features(torch.zeros(1, *obs_shape)).shape[1]
        self.head = _q_head(num_features, 512, num_actions, dueling)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Reordered while still uint8: a quarter of the bytes of the scaled copy.
        obs = obs.contiguous(memory_format=self.memory_format)
        if obs.dtype == torch.uint8:
            obs = obs.float().div_(255)  # in place: one new tensor instead of two
        features = self.features(obs)
        device_type = features.device.type
        if torch.is_autocast_enabled(device_type):
            # The head in float32 under autocast: bfloat16 keeps 8 bits of mantissa, so
            # Q-values near 1.6 would come in steps of about 0.008, a third of a typical
            # TD error; the head is a sixth of the network's work.
            with torch.autocast(device_type, enabled=False):
                return self.head(features.float())
        return self.head(features)


class MLP(nn.Module):
    """A fully connected Q-network for vector states, ReLU between layers; the
    defaults (two hidden layers of 128) are those of the PyTorch CartPole DQN tutorial.
    With ``dueling=True`` the last hidden layer feeds a value and an advantage output
    (Wang et al. 2016).
    """

    def __init__(self, obs_dim: int, num_actions: int, hidden: Sequence[int] = (128, 128), *,
                 dueling: bool = False):
        super().__init__()
        layers = []
        in_features = obs_dim
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        self.features = nn.Sequential(*layers)
        self.head = _q_head(in_features, 0, num_actions, dueling)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(obs))


def make_q_network(obs_shape: Sequence[int], obs_dtype: torch.dtype, num_actions: int, *,
                   dueling: bool = False, hidden: Sequence[int] = (128, 128)) -> nn.Module:
    """The Q-network for an observation space: ``NatureDQN`` for uint8 images
    (channels, height, width), ``MLP`` with ``hidden`` layers for flat vectors.
    """
    obs_shape = tuple(obs_shape)
    if obs_dtype == torch.uint8 and len(obs_shape) == 3:
        return NatureDQN(obs_shape, num_actions, dueling=dueling)
    if len(obs_shape) == 1 and obs_dtype.is_floating_point:
        return MLP(obs_shape[0], num_actions, hidden, dueling=dueling)
    raise ValueError(f"no default Q-network for observations of shape {obs_shape} and dtype "
                     f"{obs_dtype}: expected uint8 (channels, height, width) images or a "
                     f"floating-point vector; build one yourself")
