"""dqnfast: fast, correct Deep Q-Networks in PyTorch."""
from dqnfast import ops
from dqnfast.loss import DQNLoss, dqn_loss
from dqnfast.models import MLP, NatureDQN, make_q_network
from dqnfast.preprocess import preprocess_frames, push_frames
from dqnfast.replay_buffer import Batch, ReplayBuffer

__all__ = ["Batch", "DQNLoss", "MLP", "NatureDQN", "ReplayBuffer", "dqn_loss", "make_q_network",
           "ops", "preprocess_frames", "push_frames"]
__version__ = "0.1.0"
