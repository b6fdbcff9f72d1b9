"""dqnfast: fast, correct Deep Q-Networks in PyTorch."""
from dqnfast import ops
from dqnfast.preprocess import preprocess_frames, push_frames
from dqnfast.replay_buffer import Batch, ReplayBuffer

__all__ = ["Batch", "ReplayBuffer", "ops", "preprocess_frames", "push_frames"]
__version__ = "0.1.0"
