"""dqnfast: fast, correct Deep Q-Networks in PyTorch."""
from dqnfast import ops
from dqnfast.replay_buffer import Batch, ReplayBuffer

__all__ = ["Batch", "ReplayBuffer", "ops"]
__version__ = "0.1.0"
