"""Acting: epsilon-greedy actions, and which weights act (the learner's own on the CPU;
on a GPU a copy on its own stream that never waits behind queued updates)."""
import numpy as np
import pytest
import torch

from dqnfast.acting import ActingNetwork, select_actions
from dqnfast.models import MLP


def test_select_actions_is_greedy_where_it_does_not_explore():
    torch.manual_seed(0)
    q_network = MLP(4, 3, hidden=(8,))
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    greedy = q_network(torch.from_numpy(obs)).argmax(dim=1).numpy()
    rng = np.random.default_rng(1)
    assert np.array_equal(select_actions(q_network, obs, 0.0, 3, torch.device("cpu"), rng), greedy)
    explored = select_actions(q_network, obs, 1.0, 3, torch.device("cpu"), rng)
    assert explored.min() >= 0 and explored.max() < 3 and not np.array_equal(explored, greedy)
    # A tensor already on the device acts the same as its array.
    assert np.array_equal(select_actions(q_network, torch.from_numpy(obs), 0.0, 3,
                                         torch.device("cpu"), rng), greedy)


def test_on_the_cpu_the_learner_network_itself_acts():
    q_network = MLP(4, 3, hidden=(8,))
    acting = ActingNetwork(q_network, refresh_updates=1)
    assert acting.network is q_network and not acting.on_gpu
    acting.after_update(1)  # nothing to snapshot
    with torch.no_grad():
        next(q_network.parameters()).add_(1.0)  # an update: acting sees it at once
    obs = np.ones((2, 4), np.float32)
    expected = q_network(torch.from_numpy(obs)).argmax(dim=1).numpy()
    assert np.array_equal(acting.act(obs, 0.0, 3, np.random.default_rng(0)), expected)


@pytest.mark.cuda
def test_acting_never_waits_for_queued_updates_and_takes_their_snapshot():
    torch.manual_seed(0)
    q_network = MLP(4, 3, hidden=(16,)).cuda()
    acting = ActingNetwork(q_network, refresh_updates=2)
    obs = torch.randn(8, 4, device="cuda")
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for p in q_network.parameters():
            p.add_(1.0)
    acting.after_update(1)  # not a refresh point
    acting.after_update(2)  # snapshot queued on the learner's stream
    torch.cuda._sleep(2_000_000_000)  # a long queued "update" on the learner's stream
    behind = torch.cuda.Event()
    behind.record()
    acting.act(obs, 0.0, 3, rng)  # returns while the learner's stream is still busy
    assert not behind.query(), "acting waited for the learner's stream"
    torch.cuda.synchronize()
    acting.act(obs, 0.0, 3, rng)  # the snapshot is done: taken now
    torch.cuda.synchronize()
    for mine, learner in zip(acting.network.parameters(), q_network.parameters()):
        assert torch.equal(mine, learner)
    with torch.no_grad():
        expected = q_network(obs).argmax(dim=1).cpu().numpy()
    assert np.array_equal(acting.act(obs, 0.0, 3, rng), expected)


@pytest.mark.cuda
def test_a_learner_whose_actors_act_elsewhere_keeps_no_copy():
    q_network = MLP(4, 3, hidden=(8,)).cuda()
    acting = ActingNetwork(q_network, refresh_updates=1, own_copy=False)
    assert acting.network is q_network and not acting.on_gpu
