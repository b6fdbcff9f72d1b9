"""Textbook DQN updates: the baselines ``bench_loss.py`` times ``dqnfast.dqn_loss`` against.

``per_sample_update`` follows the replay step of the course notes' CartPole DQN:
for each sampled transition it runs the network on that one state, copies the
output (detached) as the target vector, overwrites the taken action's entry with
``r`` or ``r + gamma * max Q(s')``, and collects both; then one criterion call on
the concatenated vectors, backward and an optimizer step. The notes take Q(s')
from the online network itself; here it comes from ``target_network`` like in the
book chapter and the PyTorch tutorial, which costs the same. Because every entry
but the taken action's has zero error, the criterion's mean over batch x actions
is the per-transition loss divided by the number of actions.

``chapter_calc_loss`` is the book chapter's vectorized loss: numpy batch in, a
tensor per field, ``gather`` for Q(s, a), the target network's ``max`` for the next
state, zero for finished episodes, ``detach``, mean squared error. The chapter masks
with a uint8 tensor, which current PyTorch rejects; the mask here is bool.

Nothing is optimized on purpose: this is how the textbook code spends its time.
"""
import numpy as np
import torch
from torch import nn


def per_sample_update(q_network, target_network, optimizer, transitions, gamma, criterion):
    """One update from ``transitions``: a list of (state, action, reward, next_state, done)
    with each state a (1, *obs_shape) tensor, as the notes keep them in their deque."""
    predictions, targets = [], []
    for state, action, reward, next_state, done in transitions:
        q_values = q_network(state)
        target = q_values.clone().detach()
        with torch.no_grad():
            if done:
                target[0][action] = reward
            else:
                target[0][action] = reward + gamma * torch.max(target_network(next_state)[0])
        predictions.append(q_values[0])
        targets.append(target[0])
    optimizer.zero_grad()
    loss = criterion(torch.cat(predictions), torch.cat(targets))
    loss.backward()
    optimizer.step()
    return loss


def chapter_calc_loss(batch, q_network, target_network, gamma, device="cpu"):
    """The chapter's loss of a (states, actions, rewards, dones, next_states) numpy batch,
    its tensors moved to ``device`` as the chapter moves them (to the networks')."""
    states, actions, rewards, dones, next_states = batch
    states_v = torch.tensor(states).to(device)
    next_states_v = torch.tensor(next_states).to(device)
    actions_v = torch.tensor(actions).to(device)
    rewards_v = torch.tensor(rewards).to(device)
    done_mask = torch.tensor(dones, dtype=torch.bool).to(device)

    state_action_values = q_network(states_v).gather(1, actions_v.unsqueeze(-1)).squeeze(-1)
    next_state_values = target_network(next_states_v).max(1)[0]
    next_state_values[done_mask] = 0.0
    next_state_values = next_state_values.detach()
    expected_state_action_values = next_state_values * gamma + rewards_v
    return nn.MSELoss()(state_action_values, expected_state_action_values)


def to_transitions(obs, action, reward, next_obs, terminated):
    """A tensor batch as the notes' list of per-transition tuples (built outside timings)."""
    return [(obs[i:i + 1].clone(), int(action[i]), torch.tensor(float(reward[i])),
             next_obs[i:i + 1].clone(), bool(terminated[i])) for i in range(len(obs))]


def to_numpy_batch(obs, action, reward, next_obs, terminated):
    """A tensor batch as the chapter's ``ExperienceBuffer.sample`` returns it."""
    return (obs.numpy(), action.numpy(), reward.numpy(), terminated.numpy().astype(np.uint8),
            next_obs.numpy())
