"""Whole textbook DQN training loops: the baselines ``bench_training.py`` times dqnfast's
``train`` against, end to end (environment, acting, replay, updates, target network).

``tutorial_cartpole`` is the PyTorch DQN tutorial on CartPole-v1 (seed 000). The replay
memory is a ``deque`` of ``Transition(state, action, next_state, reward)`` tuples, each
field a small tensor with a batch dimension of one (``next_state`` is ``None`` when the
pole fell); ``random.sample`` draws the batch, ``zip`` transposes it and ``torch.cat``
joins each field; a mask of non-final next states decides which targets bootstrap.
The policy and target networks are three-layer MLPs (128, 128), AdamW with amsgrad at
1e-4, Huber loss, gradients clipped by value at 100, an exponentially decaying epsilon
(0.9 to 0.05, time constant 1000 steps), one ``optimize_model`` per environment step
and, after every step, a soft update of the target (tau 0.005) computed key by key
over the two ``state_dict()``s and loaded back with ``load_state_dict``. Left out:
the per-episode print and the wandb logging.

``chapter_pong`` is the book chapter's Pong loop (seed 004): its gym wrappers rewritten
for gymnasium's API (``MaxAndSkipEnv``, ``FireResetEnv``, ``ProcessFrame84`` with its
float gray conversion, ``cv2`` area resize to 84x110 and crop, ``ImageToPyTorch``,
``BufferWrapper`` stacking 4 frames, ``ScaledFloatFrame`` making float32 stacks), the
chapter's ``ExperienceBuffer`` (``textbook.py``) holding those float32 stacks, the
``Agent.play_step`` that runs the network on each greedy step without ``no_grad``, the
vectorized ``calc_loss`` (``textbook_loss.chapter_calc_loss``, MSE), Adam 1e-4, batch
32, one update per frame once the buffer holds the start size, the target synced every
1000 frames and the best model saved when the 100-game mean improves. Left out: the
console and TensorBoard logging at each game's end. The chapter played
``PongNoFrameskip-v4`` through gym; here it is gymnasium's ``ALE/Pong-v5`` with
``frameskip=1`` and ``repeat_action_probability=0``, so that, as there, the wrappers do
all the skipping and max-pooling.

Both loops take the settings the benchmark must pair with dqnfast's as arguments (the
defaults are the sources'), stop after ``total_steps`` environment steps and return a
``LoopResult``. Nothing is optimized on purpose: this is how the textbook code runs.
"""
import collections
import math
import random
from itertools import count
from pathlib import Path
from typing import NamedTuple, Optional

import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim

from textbook import Experience, ExperienceBuffer
from textbook_loss import chapter_calc_loss


class LoopResult(NamedTuple):
    steps: int  # environment steps (env.step calls), each one a stored transition
    updates: int  # optimizer steps
    episodes: int  # episodes that ended within the steps


# -- the PyTorch tutorial on CartPole ---------------------------------------------------

Transition = collections.namedtuple("Transition", ("state", "action", "next_state", "reward"))


class ReplayMemory:
    """The tutorial's replay memory: a bounded deque of ``Transition``s."""

    def __init__(self, capacity):
        self.memory = collections.deque([], maxlen=capacity)

    def push(self, *args):
        self.memory.append(Transition(*args))

    def sample(self, batch_size):
        return random.sample(self.memory, batch_size)

    def __len__(self):
        return len(self.memory)


class TutorialDQN(nn.Module):
    """The tutorial's Q-network: three linear layers, ReLU between them."""

    def __init__(self, n_observations, n_actions):
        super().__init__()
        self.layer1 = nn.Linear(n_observations, 128)
        self.layer2 = nn.Linear(128, 128)
        self.layer3 = nn.Linear(128, n_actions)

    def forward(self, x):
        x = F.relu(self.layer1(x))
        x = F.relu(self.layer2(x))
        return self.layer3(x)


def tutorial_cartpole(total_steps: int, *, learning_starts: Optional[int] = None,
                      batch_size: int = 128, gamma: float = 0.99, eps_start: float = 0.9,
                      eps_end: float = 0.05, eps_decay: float = 1000, tau: float = 0.005,
                      lr: float = 1e-4, memory_size: int = 10_000, seed: int = 0,
                      device: str = "cpu") -> LoopResult:
    """The tutorial's training loop for ``total_steps`` environment steps.

    The tutorial starts optimizing as soon as the memory holds one batch; with
    ``learning_starts`` it waits until the memory holds that many transitions (the one
    change, so that the benchmark can pair it with dqnfast's ``learning_starts``).
    """
    device = torch.device(device)
    start_size = batch_size if learning_starts is None else max(batch_size, learning_starts)
    random.seed(seed)
    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    n_actions = env.action_space.n
    state, info = env.reset(seed=seed)
    n_observations = len(state)

    policy_net = TutorialDQN(n_observations, n_actions).to(device)
    target_net = TutorialDQN(n_observations, n_actions).to(device)
    target_net.load_state_dict(policy_net.state_dict())
    optimizer = optim.AdamW(policy_net.parameters(), lr=lr, amsgrad=True)
    memory = ReplayMemory(memory_size)
    steps_done = 0
    updates = 0

    def select_action(state):
        nonlocal steps_done
        sample = random.random()
        eps_threshold = eps_end + (eps_start - eps_end) * math.exp(-1.0 * steps_done / eps_decay)
        steps_done += 1
        if sample > eps_threshold:
            with torch.no_grad():
                return policy_net(state).max(1).indices.view(1, 1)
        return torch.tensor([[env.action_space.sample()]], device=device, dtype=torch.long)

    def optimize_model():
        nonlocal updates
        if len(memory) < start_size:
            return 0
        transitions = memory.sample(batch_size)
        batch = Transition(*zip(*transitions))  # a batch of transitions -> per-field tuples

        non_final_mask = torch.tensor(tuple(map(lambda s: s is not None, batch.next_state)),
                                      device=device, dtype=torch.bool)
        non_final_next_states = torch.cat([s for s in batch.next_state if s is not None])
        state_batch = torch.cat(batch.state)
        action_batch = torch.cat(batch.action)
        reward_batch = torch.cat(batch.reward)

        state_action_values = policy_net(state_batch).gather(1, action_batch)
        next_state_values = torch.zeros(batch_size, device=device)
        with torch.no_grad():
            next_state_values[non_final_mask] = target_net(non_final_next_states).max(1).values
        expected_state_action_values = (next_state_values * gamma) + reward_batch

        criterion = nn.SmoothL1Loss()
        loss = criterion(state_action_values, expected_state_action_values.unsqueeze(1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(policy_net.parameters(), 100)
        optimizer.step()
        updates += 1
        return loss.item()

    episodes = 0
    first_episode = True
    while steps_done < total_steps:
        if not first_episode:  # the first reset above carried the seed
            state, info = env.reset()
        first_episode = False
        state = torch.tensor(state, dtype=torch.float32, device=device).unsqueeze(0)
        episode_losses = []
        for t in count():
            action = select_action(state)
            observation, reward, terminated, truncated, _ = env.step(action.item())
            reward = torch.tensor([reward], device=device)
            done = terminated or truncated
            if terminated:
                next_state = None
            else:
                next_state = torch.tensor(observation, dtype=torch.float32,
                                          device=device).unsqueeze(0)
            memory.push(state, action, next_state, reward)
            state = next_state

            episode_losses.append(optimize_model())

            # Soft update of the target network: theta' <- tau theta + (1 - tau) theta'
            target_net_state_dict = target_net.state_dict()
            policy_net_state_dict = policy_net.state_dict()
            for key in policy_net_state_dict:
                target_net_state_dict[key] = (policy_net_state_dict[key] * tau
                                              + target_net_state_dict[key] * (1 - tau))
            target_net.load_state_dict(target_net_state_dict)

            if done:
                episodes += 1
                _episode_mean_loss = sum(episode_losses) / len(episode_losses)
                break
            if steps_done >= total_steps:
                break
    env.close()
    return LoopResult(steps_done, updates, episodes)


# -- the book chapter on Pong -----------------------------------------------------------

def make_chapter_env(seed: int = 0):
    """The chapter's ``make_env`` on gymnasium: raw frames every frame, then its wrappers."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    env = MaxAndSkipEnv(env)
    env = FireResetEnv(env)
    env = ProcessFrame84(env)
    env = ImageToPyTorch(env)
    env = BufferWrapper(env, 4)
    return ScaledFloatFrame(env)


class MaxAndSkipEnv(gym.Wrapper):
    """Repeats each action ``skip`` frames, sums the rewards, and returns the pixel-wise
    maximum of the last two frames (the Atari sprites flicker)."""

    def __init__(self, env, skip=4):
        super().__init__(env)
        self._obs_buffer = collections.deque(maxlen=2)
        self._skip = skip

    def step(self, action):
        total_reward = 0.0
        terminated = truncated = False
        info = {}
        for _ in range(self._skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            self._obs_buffer.append(obs)
            total_reward += reward
            if terminated or truncated:
                break
        max_frame = np.max(np.stack(self._obs_buffer), axis=0)
        return max_frame, total_reward, terminated, truncated, info

    def reset(self, **kwargs):
        self._obs_buffer.clear()
        obs, info = self.env.reset(**kwargs)
        self._obs_buffer.append(obs)
        return obs, info


class FireResetEnv(gym.Wrapper):
    """Presses FIRE (then action 2) after each reset: Pong only starts on FIRE."""

    def __init__(self, env):
        super().__init__(env)
        assert env.unwrapped.get_action_meanings()[1] == "FIRE"
        assert len(env.unwrapped.get_action_meanings()) >= 3

    def step(self, action):
        return self.env.step(action)

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(2)
        if terminated or truncated:
            self.env.reset(**kwargs)
        return obs, info


class ProcessFrame84(gym.ObservationWrapper):
    """RGB 210x160 to one 84x84 gray frame: float gray conversion, area resize to 84
    wide and 110 high, rows 18..101 kept, back to uint8, shape (84, 84, 1)."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(low=0, high=255, shape=(84, 84, 1),
                                                   dtype=np.uint8)

    def observation(self, obs):
        return ProcessFrame84.process(obs)

    @staticmethod
    def process(frame):
        if frame.size == 210 * 160 * 3:
            img = np.reshape(frame, [210, 160, 3]).astype(np.float32)
        elif frame.size == 250 * 160 * 3:
            img = np.reshape(frame, [250, 160, 3]).astype(np.float32)
        else:
            raise AssertionError("Unknown resolution.")
        img = img[:, :, 0] * 0.299 + img[:, :, 1] * 0.587 + img[:, :, 2] * 0.114
        resized_screen = cv2.resize(img, (84, 110), interpolation=cv2.INTER_AREA)
        x_t = resized_screen[18:102, :]
        x_t = np.reshape(x_t, [84, 84, 1])
        return x_t.astype(np.uint8)


class ImageToPyTorch(gym.ObservationWrapper):
    """HWC to CHW, as PyTorch convolutions want it."""

    def __init__(self, env):
        super().__init__(env)
        old_shape = self.observation_space.shape
        self.observation_space = gym.spaces.Box(
            low=0.0, high=1.0, shape=(old_shape[-1], old_shape[0], old_shape[1]),
            dtype=np.float32)

    def observation(self, observation):
        return np.moveaxis(observation, 2, 0)


class BufferWrapper(gym.ObservationWrapper):
    """Stacks the last ``n_steps`` frames along the first axis, in one array shifted in
    place each step (zeros at the start of an episode)."""

    def __init__(self, env, n_steps, dtype=np.float32):
        super().__init__(env)
        self.dtype = dtype
        old_space = env.observation_space
        self.observation_space = gym.spaces.Box(
            old_space.low.repeat(n_steps, axis=0), old_space.high.repeat(n_steps, axis=0),
            dtype=dtype)

    def reset(self, **kwargs):
        self.buffer = np.zeros_like(self.observation_space.low, dtype=self.dtype)
        obs, info = self.env.reset(**kwargs)
        return self.observation(obs), info

    def observation(self, observation):
        self.buffer[:-1] = self.buffer[1:]
        self.buffer[-1] = observation
        return self.buffer


class ScaledFloatFrame(gym.ObservationWrapper):
    """A fresh float32 copy of the stack, scaled to [0, 1]."""

    def observation(self, obs):
        return np.array(obs).astype(np.float32) / 255.0


class ChapterDQN(nn.Module):
    """The chapter's Nature-DQN: three convolutions, then 512 units and one output per
    action; it takes float input already scaled to [0, 1]."""

    def __init__(self, input_shape, n_actions):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
        )
        conv_out_size = self._get_conv_out(input_shape)
        self.fc = nn.Sequential(nn.Linear(conv_out_size, 512), nn.ReLU(),
                                nn.Linear(512, n_actions))

    def _get_conv_out(self, shape):
        o = self.conv(torch.zeros(1, *shape))
        return int(np.prod(o.size()))

    def forward(self, x):
        conv_out = self.conv(x).view(x.size()[0], -1)
        return self.fc(conv_out)


class Agent:
    """Plays one step at a time and appends each experience to the buffer."""

    def __init__(self, env, exp_buffer):
        self.env = env
        self.exp_buffer = exp_buffer
        self._reset()

    def _reset(self):
        self.state, _ = self.env.reset()
        self.total_reward = 0.0

    def play_step(self, net, epsilon=0.0, device="cpu"):
        done_reward = None
        if np.random.random() < epsilon:
            action = self.env.action_space.sample()
        else:
            # The chapter's np.array([state], copy=False) needs a copy all the same
            # (NumPy 2 refuses copy=False then); like the chapter, no torch.no_grad.
            state_a = np.asarray([self.state])
            state_v = torch.tensor(state_a).to(device)
            q_vals_v = net(state_v)
            _, act_v = torch.max(q_vals_v, dim=1)
            action = int(act_v.item())

        new_state, reward, terminated, truncated, _ = self.env.step(action)
        # The chapter's gym returned one ``done`` that a time limit set too; so here.
        is_done = terminated or truncated
        self.total_reward += reward
        exp = Experience(self.state, action, reward, is_done, new_state)
        self.exp_buffer.append(exp)
        self.state = new_state
        if is_done:
            done_reward = self.total_reward
            self._reset()
        return done_reward


def chapter_pong(total_steps: int, *, replay_start_size: int = 10_000,
                 replay_size: int = 10_000, batch_size: int = 32, gamma: float = 0.99,
                 learning_rate: float = 1e-4, sync_target_frames: int = 1000,
                 epsilon_start: float = 1.0, epsilon_final: float = 0.02,
                 epsilon_decay_last_frame: int = 100_000,
                 mean_reward_bound: Optional[float] = 19.5, run_dir=".", seed: int = 0,
                 device: str = "cpu", train_frequency: int = 1) -> LoopResult:
    """The chapter's training loop for ``total_steps`` frames (agent steps), or until the
    mean of the last 100 games passes ``mean_reward_bound``. The best model goes to
    ``run_dir``. ``train_frequency`` (not in the chapter, which updates on every
    step) updates only on every n-th step, for the Nature paper's setting of 4."""
    device = torch.device(device)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = make_chapter_env(seed)
    net = ChapterDQN(env.observation_space.shape, env.action_space.n).to(device)
    tgt_net = ChapterDQN(env.observation_space.shape, env.action_space.n).to(device)
    buffer = ExperienceBuffer(replay_size)
    agent = Agent(env, buffer)
    optimizer = optim.Adam(net.parameters(), lr=learning_rate)
    total_rewards = []
    frame_idx = 0
    updates = 0
    best_mean_reward = None
    best_path = Path(run_dir) / "PongNoFrameskip-v4-best.dat"

    while frame_idx < total_steps:
        frame_idx += 1
        epsilon = max(epsilon_final, epsilon_start - frame_idx / epsilon_decay_last_frame)
        reward = agent.play_step(net, epsilon, device=device)
        if reward is not None:
            total_rewards.append(reward)
            mean_reward = np.mean(total_rewards[-100:])
            if best_mean_reward is None or best_mean_reward < mean_reward:
                torch.save(net.state_dict(), best_path)
                best_mean_reward = mean_reward
            if mean_reward_bound is not None and mean_reward > mean_reward_bound:
                break

        if len(buffer) < replay_start_size:
            continue
        if frame_idx % sync_target_frames == 0:
            tgt_net.load_state_dict(net.state_dict())
        if frame_idx % train_frequency != 0:
            continue

        optimizer.zero_grad()
        batch = buffer.sample(batch_size)
        loss_t = chapter_calc_loss(batch, net, tgt_net, gamma, device)
        loss_t.backward()
        optimizer.step()
        updates += 1
    env.close()
    return LoopResult(frame_idx, updates, len(total_rewards))
