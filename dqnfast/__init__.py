"""dqnfast: fast, correct Deep Q-Networks in PyTorch."""
import importlib

import torch

_BUILD = "pip install --no-build-isolation -e .  (in the dqnfast source tree; or: make setup)"
try:  # the compiled core registers torch.ops.dqnfast
    importlib.import_module("dqnfast._C")
except ModuleNotFoundError as error:
    if error.name != "dqnfast._C":
        raise
    raise ImportError("dqnfast's compiled core (dqnfast._C) is not built; build it with: "
                      f"{_BUILD}") from None
except ImportError as error:
    raise ImportError(f"dqnfast's compiled core (dqnfast._C) does not load with torch "
                      f"{torch.__version__}: {error}. It was probably built against another torch; "
                      f"rebuild it with: {_BUILD}") from error

from dqnfast import ops  # noqa: E402
from dqnfast.loss import DQNLoss, dqn_loss
from dqnfast.models import MLP, NatureDQN, make_q_network
from dqnfast.preprocess import preprocess_frames, push_frames
from dqnfast.replay_buffer import Batch, ReplayBuffer

__all__ = ["Batch", "DQNLoss", "MLP", "NatureDQN", "ReplayBuffer", "dqn_loss", "make_q_network",
           "ops", "preprocess_frames", "push_frames"]
__version__ = "0.1.0"
