"""The textbook replay buffer: the baseline the benchmarks compare against.

This reproduces the ``ExperienceBuffer`` of the "Deep Q-Learning Agent" book chapter
that trains a DQN on Pong. Each transition is one ``Experience`` namedtuple holding
its own ``state`` and ``new_state`` arrays; a ``collections.deque`` with ``maxlen``
drops the oldest. ``sample`` draws distinct indices with
``np.random.choice(..., replace=False)``, gathers the experiences and packs each
field into a fresh numpy array, with the dtypes the chapter uses.

In the chapter's agent loop every environment step yields one new observation
array, which is the ``new_state`` of that experience and the ``state`` of the next;
its wrappers make float32 stacks (the benchmarks feed uint8 to every buffer alike).
Nothing is optimized on purpose: this is how the chapter's code spends time and memory.
"""
import collections

import numpy as np

Experience = collections.namedtuple(
    "Experience", field_names=["state", "action", "reward", "done", "new_state"])


class ExperienceBuffer:
    def __init__(self, capacity):
        self.buffer = collections.deque(maxlen=capacity)

    def __len__(self):
        return len(self.buffer)

    def append(self, experience):
        self.buffer.append(experience)

    def sample(self, batch_size):
        """(states, actions, rewards, dones, new_states) as numpy arrays."""
        indices = np.random.choice(len(self.buffer), batch_size, replace=False)
        states, actions, rewards, dones, new_states = zip(*[self.buffer[i] for i in indices])
        return (np.array(states), np.array(actions), np.array(rewards, dtype=np.float32),
                np.array(dones, dtype=np.uint8), np.array(new_states))
