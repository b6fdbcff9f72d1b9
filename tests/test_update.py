"""The learner's step (dqnfast.update): eager against a plain loop, graphed against eager."""
import copy
import os

import numpy as np
import pytest
import torch

import dqnfast
from dqnfast.loss import dqn_loss
from dqnfast.models import make_q_network
from dqnfast.update import GraphedUpdate, Update
from reference import EpisodeStreams


def filled_buffer(obs_shape, frame_stack, *, device="cpu", storage_device="cpu", steps=60,
                  **options):
    """A buffer of random episodes: uint8 frame stacks, or float32 vectors when
    frame_stack is 1; actions in range(6). ``options`` go to ReplayBuffer (n_step, ...)."""
    num_envs = 2
    dtype = torch.uint8 if frame_stack > 1 else torch.float32
    replay = dqnfast.ReplayBuffer(500, obs_shape, num_envs=num_envs, frame_stack=frame_stack,
                                  obs_dtype=dtype, device=device,
                                  storage_device=storage_device, seed=3, **options)
    streams = EpisodeStreams(np.random.default_rng(0), num_envs, frame_stack,
                             obs_shape[1:] if frame_stack > 1 else obs_shape,
                             np.uint8 if frame_stack > 1 else np.float32)
    for _ in range(steps):
        replay.add(*streams.step())
    return replay


def networks(obs_shape, num_actions=6, device="cpu", seed=0):
    torch.manual_seed(seed)
    dtype = torch.uint8 if len(obs_shape) == 3 else torch.float32
    q_network = make_q_network(obs_shape, dtype, num_actions).to(device)
    return q_network, copy.deepcopy(q_network).requires_grad_(False)


@pytest.mark.parametrize("tau, double_dqn, max_grad_norm, n_step, prioritized", [
    (1.0, False, None, 1, False), (0.05, True, 1.0, 1, False),
    (1.0, False, None, 3, True), (0.05, True, 1.0, 2, False)])
def test_update_is_the_plain_loop(tau, double_dqn, max_grad_norm, n_step, prioritized):
    obs_shape, num_actions = (4, 36, 36), 6
    runs = []
    for use_update in (True, False):
        replay = filled_buffer(obs_shape, 4, gamma=0.9, n_step=n_step, prioritized=prioritized)
        q_network, target_network = networks(obs_shape, num_actions)
        optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-3)
        update = Update(q_network, target_network, optimizer, replay, batch_size=16,
                        loss="huber", double_dqn=double_dqn, max_grad_norm=max_grad_norm, tau=tau)
        losses = []
        for i in range(6):
            if use_update:
                losses.append(update().loss.item())
            else:  # the same step written out
                batch = replay.sample(16)
                result = dqn_loss(q_network, target_network, *batch[:5], discount=batch.discount,
                                  weight=batch.weight if prioritized else None, loss="huber",
                                  double_dqn=double_dqn)
                optimizer.zero_grad()
                result.loss.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(q_network.parameters(), max_grad_norm)
                optimizer.step()
                if prioritized:
                    replay.update_priorities(batch.index, result.td_error.abs())
                if tau < 1.0:
                    with torch.no_grad():
                        for t, p in zip(target_network.parameters(), q_network.parameters()):
                            t.mul_(1 - tau).add_(tau * p)
                losses.append(result.loss.item())
            if i == 3 and tau == 1.0:
                if use_update:
                    update.sync_target()
                else:
                    target_network.load_state_dict(q_network.state_dict())
        runs.append((losses, q_network.state_dict(), target_network.state_dict()))
    (losses_a, online_a, target_a), (losses_b, online_b, target_b) = runs
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5)
    for name in online_a:
        torch.testing.assert_close(online_a[name], online_b[name])
        torch.testing.assert_close(target_a[name], target_b[name])
    if tau == 1.0:  # synced once, then left alone
        assert not torch.equal(online_a["head.2.weight"], target_a["head.2.weight"])


def test_bfloat16_update_is_the_autocast_loop_and_close_to_float32():
    """precision="bfloat16" is the written-out step under bfloat16 autocast; its loss
    and TD errors are float32 and within bfloat16's rounding of the float32 ones."""
    obs_shape = (4, 36, 36)
    runs = {}
    for precision, written_out in (("bfloat16", False), ("bfloat16", True), ("float32", False)):
        replay = filled_buffer(obs_shape, 4, gamma=0.9, n_step=3, prioritized=True)
        q_network, target_network = networks(obs_shape)
        optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-3)
        update = Update(q_network, target_network, optimizer, replay, batch_size=16,
                        precision=precision)
        results = []
        for _ in range(3):
            if written_out:
                batch = replay.sample(16)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    result = dqn_loss(q_network, target_network, *batch[:5],
                                      discount=batch.discount, weight=batch.weight)
                optimizer.zero_grad()
                result.loss.backward()
                optimizer.step()
                replay.update_priorities(batch.index, result.td_error.abs())
            else:
                result = update()
            assert result.loss.dtype == result.td_error.dtype == torch.float32
            results.append((result.loss.item(), result.td_error.clone()))
        runs[precision, written_out] = results, q_network.state_dict()
    (bf16, online_bf16), (loop, online_loop) = runs["bfloat16", False], runs["bfloat16", True]
    for (loss_a, td_a), (loss_b, td_b) in zip(bf16, loop):
        assert loss_a == loss_b and torch.equal(td_a, td_b)
    for name in online_bf16:
        assert torch.equal(online_bf16[name], online_loop[name])
    # The first update starts from the same weights and batch: only rounding differs.
    (loss_32, td_32), (loss_16, td_16) = runs["float32", False][0][0], bf16[0]
    assert loss_16 == pytest.approx(loss_32, rel=0.05)
    torch.testing.assert_close(td_16, td_32, rtol=0.05, atol=0.02)


def test_unknown_precision_is_refused():
    q_network, target_network = networks((4,), 2)
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'bfloat16'\), "
                                         "got 'float16'"):
        Update(q_network, target_network, torch.optim.SGD(q_network.parameters(), lr=0.1),
               filled_buffer((4,), 1), batch_size=4, precision="float16")


def test_sync_target_copies_every_parameter():
    q_network, target_network = networks((4,), 2)
    with torch.no_grad():
        for p in q_network.parameters():
            p.add_(1.0)
    update = Update(q_network, target_network, torch.optim.SGD(q_network.parameters(), lr=0.1),
                    filled_buffer((4,), 1), batch_size=4)
    update.sync_target()
    for a, b in zip(q_network.parameters(), target_network.parameters()):
        assert torch.equal(a, b)


def test_target_network_must_match():
    q_network, _ = networks((4,), 2)
    other, _ = networks((8,), 2)
    with pytest.raises(ValueError, match="target_network must have the parameters of q_network"):
        Update(q_network, other, torch.optim.SGD(q_network.parameters(), lr=0.1),
               filled_buffer((4,), 1), batch_size=4)


def test_graphed_update_refuses_cpu_networks():
    q_network, target_network = networks((4,), 2)
    with pytest.raises(ValueError, match="needs the networks on a CUDA device"):
        GraphedUpdate(q_network, target_network, torch.optim.Adam(q_network.parameters()),
                      filled_buffer((4,), 1), batch_size=4)


def test_sample_in_graph_needs_cuda_storage():
    with pytest.raises(ValueError, match="sample_in_graph needs storage_device and device both CUDA"):
        filled_buffer((4,), 1).sample_in_graph(4)


# -- CUDA graphs (skipped without a GPU) --------------------------------------------------

@pytest.fixture
def deterministic_cuda():
    """cuDNN and cuBLAS pick deterministic algorithms for the test (so eager and captured
    runs, on different streams, compute alike), then the settings are restored."""
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8"), \
        "CUBLAS_WORKSPACE_CONFIG must be set before cuBLAS starts (tests/conftest.py sets it)"
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@pytest.mark.cuda
@pytest.mark.parametrize("storage_device", ["cpu", "cuda"])
@pytest.mark.parametrize("tau, precision", [(1.0, "float32"), (0.01, "float32"),
                                            (1.0, "bfloat16")])
def test_graphed_update_equals_eager_after_100_updates(storage_device, tau, precision,
                                                       deterministic_cuda):
    obs_shape, num_actions = (4, 84, 84), 6
    runs = []
    for kind in (Update, GraphedUpdate):
        replay = filled_buffer(obs_shape, 4, device="cuda", storage_device=storage_device,
                               steps=200)
        q_network, target_network = networks(obs_shape, num_actions, device="cuda")
        optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True, capturable=True)
        update = kind(q_network, target_network, optimizer, replay, batch_size=32,
                      tau=tau, precision=precision)
        losses = []
        for i in range(100):
            losses.append(update().loss.clone())
            if tau == 1.0 and i % 25 == 24:
                update.sync_target()
        torch.cuda.synchronize()
        runs.append((torch.stack(losses).cpu(), q_network.state_dict(), target_network.state_dict()))
    (losses_e, online_e, target_e), (losses_g, online_g, target_g) = runs
    torch.testing.assert_close(losses_g, losses_e, rtol=1e-4, atol=1e-5)
    for name in online_e:
        torch.testing.assert_close(online_g[name], online_e[name], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(target_g[name], target_e[name], rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_graphed_update_samples_what_is_added_after_capture():
    """The captured sample reads the buffer's size on the GPU: transitions added after
    the capture (with rewards never seen before) show up in later batches."""
    obs_shape = (4, 36, 36)
    replay = filled_buffer(obs_shape, 4, device="cuda", storage_device="cuda", steps=40)
    q_network, target_network = networks(obs_shape, device="cuda")
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, capturable=True)
    update = GraphedUpdate(q_network, target_network, optimizer, replay, batch_size=64)
    for _ in range(GraphedUpdate.WARMUP_UPDATES + 1):
        update()
    streams = EpisodeStreams(np.random.default_rng(1), 2, 4, obs_shape[1:], np.uint8)
    for _ in range(400):  # overwrites all of the first 80 transitions (250 per env kept)
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        replay.add(obs, action, reward + 1000.0, next_obs, terminated, truncated)
    update()
    batch_reward = replay._output_tensors(64)[0]["reward"]  # what the graph sampled
    assert (batch_reward.cpu() >= 1000.0).all()
