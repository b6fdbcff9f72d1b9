"""CUDA kernels against their CPU twins, bit for bit. Skipped without a GPU."""

import numpy as np
import pytest
import torch

import dqnfast
from atari_frames import GAMES, ale_frame_pairs
from reference import (EpisodeStreams, NaiveReplayBuffer, check_against_reference,
                       check_batch_row, chunk_of, decode_index)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available()
    or not torch._C._dispatch_has_kernel_for_dispatch_key("dqnfast::replay_add", "CUDA"),
    reason="needs a GPU and dqnfast built with its CUDA kernels")


@pytest.mark.parametrize("game", GAMES)
def test_preprocess_matches_cpu_on_real_frames(game):
    frames, prev = (torch.from_numpy(x) for x in ale_frame_pairs(game, count=16))
    planar, planar_prev = (x.permute(0, 3, 1, 2).contiguous() for x in (frames, prev))
    for kwargs in (dict(), dict(mode="textbook"), dict(crop=(34, 0, 160, 160), out_size=(80, 80)),
                   dict(out_size=(105, 80))):
        cpu = dqnfast.preprocess_frames(frames, prev, **kwargs)
        assert torch.equal(dqnfast.preprocess_frames(frames.cuda(), prev.cuda(), **kwargs).cpu(), cpu)
        assert torch.equal(dqnfast.preprocess_frames(frames.cuda(), **kwargs).cpu(),
                           dqnfast.preprocess_frames(frames, **kwargs))
        assert torch.equal(dqnfast.preprocess_frames(planar.cuda(), planar_prev.cuda(),
                                                     channels_first=True, **kwargs).cpu(), cpu)


def test_preprocess_matches_cpu_on_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 200, 2)
        out_size = (int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1)))
        frames = torch.from_numpy(rng.integers(0, 256, (3, height, width, 3), dtype=np.uint8))
        assert torch.equal(dqnfast.preprocess_frames(frames.cuda(), out_size=out_size).cpu(),
                           dqnfast.preprocess_frames(frames, out_size=out_size))


def test_push_frames_matches_cpu():
    rng = np.random.default_rng(0)
    cpu = torch.from_numpy(rng.integers(0, 256, (6, 4, 84, 84), dtype=np.uint8))
    gpu = cpu.cuda()
    for step in range(20):
        frames = torch.from_numpy(rng.integers(0, 256, (6, 84, 84), dtype=np.uint8))
        reset = torch.from_numpy(rng.random(6) < 0.3) if step % 2 else None
        cpu = dqnfast.push_frames(cpu, frames, reset)
        gpu = dqnfast.push_frames(gpu, frames.cuda(), None if reset is None else reset.cuda())
        assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.parametrize("n_step,prioritized", [(1, False), (3, False), (1, True), (5, True)])
@pytest.mark.parametrize("frame_stack,frame_shape", [(4, (84, 84)), (1, (4,)), (3, (5, 7))])
def test_gpu_storage_equals_cpu_storage(frame_stack, frame_shape, n_step, prioritized):
    """Same adds and priority updates: the same storage and trees bit for bit; same
    random bits: the same batches bit for bit."""
    num_envs = 3
    obs_shape = (frame_stack, *frame_shape) if frame_stack > 1 else frame_shape
    dtype = torch.float32 if frame_shape == (4,) else torch.uint8
    kwargs = dict(num_envs=num_envs, frame_stack=frame_stack, obs_dtype=dtype, seed=0,
                  frame_capacity=num_envs * 70,  # few spare frames: early evictions too
                  n_step=n_step, gamma=0.97, prioritized=prioritized, beta=0.6)
    cpu = dqnfast.ReplayBuffer(num_envs * 50, obs_shape, **kwargs)
    gpu = dqnfast.ReplayBuffer(num_envs * 50, obs_shape, storage_device="cuda", device="cuda", **kwargs)
    streams = EpisodeStreams(np.random.default_rng(1), num_envs, frame_stack, frame_shape,
                             np.float32 if dtype == torch.float32 else np.uint8, end_prob=0.1,
                             silent_reset_prob=0.02, low_entropy=True)
    rng = np.random.default_rng(2)
    for step in range(400):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        ids = rng.permutation(num_envs)[:rng.integers(1, num_envs + 1)]
        given = (rng.uniform(0, 3, len(ids)).astype(np.float32)
                 if prioritized and step % 7 == 0 else None)
        for rb in (cpu, gpu):
            rb.add(obs[ids], action[ids], reward[ids], next_obs[ids], terminated[ids],
                   truncated[ids], env_ids=ids, priority=given)
        # Once 16 can be sampled (n_step=5 holds back up to 4 transitions per env).
        if prioritized and step % 10 == 9 and len(cpu) >= 16:
            # Duplicates included: the largest wins on both.
            index = cpu.sample(16).index.clone()
            index[8:] = index[:8]
            priority = torch.from_numpy(rng.uniform(0, 4, 16).astype(np.float32))
            cpu.update_priorities(index, priority)
            gpu.update_priorities(index.cuda(), priority.cuda())
        if step % 50 == 49:
            for name, tensor in cpu.state_dict()["storage"].items():
                assert torch.equal(gpu.state_dict()["storage"][name].cpu(), tensor), name
            bits = torch.randint(0, 2**62, (64,))
            outs = []
            for rb, device in ((cpu, "cpu"), (gpu, "cuda")):
                out = {n: torch.empty_like(t, device=device) for n, t in cpu.sample(64)._asdict().items()}
                dqnfast.ops.replay_sample(rb._storage, bits.to(device), frame_stack, n_step, 0.97,
                                          rb._beta_tensor, out)
                outs.append(out)
            for name in outs[0]:
                assert torch.equal(outs[1][name].cpu(), outs[0][name]), name


@pytest.mark.parametrize("n_step,prioritized", [(1, False), (3, True)])
def test_sample_and_priority_update_captured_in_cuda_graph(n_step, prioritized):
    """The buffer's own sample_in_graph and update_priorities recorded in one graph:
    each replay's batch is the reference's n-step transitions, and its priority
    update leaves the trees bit for bit as the same update leaves a host twin's."""
    num_envs, k = 4, 4
    kwargs = dict(num_envs=num_envs, frame_stack=k, seed=0, n_step=n_step, prioritized=prioritized)
    rb = dqnfast.ReplayBuffer(num_envs * 100, (k, 8, 8), storage_device="cuda", device="cuda", **kwargs)
    twin = dqnfast.ReplayBuffer(num_envs * 100, (k, 8, 8), **kwargs)
    ref = NaiveReplayBuffer.like(rb)
    streams = EpisodeStreams(np.random.default_rng(0), num_envs, k, (8, 8), np.uint8, end_prob=0.05)

    def add(steps):
        for _ in range(steps):
            obs, action, reward, next_obs, terminated, truncated = streams.step()
            for buffer in (rb, twin):
                buffer.add(obs, action, reward, next_obs, terminated, truncated)
            ref.add(obs, action, reward, next_obs, terminated, truncated=truncated)

    add(5)
    priority = torch.zeros(32, device="cuda")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        graph.register_generator_state(rb.generator)
        with torch.cuda.graph(graph):
            batch = rb.sample_in_graph(32)
            if prioritized:
                rb.update_priorities(batch.index, priority)
    torch.cuda.current_stream().wait_stream(stream)
    rng = np.random.default_rng(1)
    for _ in range(30):  # the buffer grows, wraps, evicts; the graph reads its counters
        add(17)
        priority.copy_(torch.from_numpy(rng.uniform(0, 5, 32).astype(np.float32)))
        rb.beta = float(rng.uniform(0, 1))  # read by the captured sample
        graph.replay()
        torch.cuda.synchronize()
        expected = ref.sampleable()
        for i, index in enumerate(batch.index.cpu().tolist()):
            check_batch_row(batch, i, expected[decode_index(rb, index)])
        if prioritized:
            # The weights from the trees the sample saw (the twin's, before its update).
            sums, mins = twin.state_dict()["storage"]["sum_tree"], twin.state_dict()["storage"]["min_tree"]
            env, number = decode_index(rb, batch.index.cpu())
            leaf = len(sums) // 2 + env * 100 + number % 100
            expected = (mins[1].double() / sums[leaf]) ** rb.beta
            torch.testing.assert_close(batch.weight.cpu().double(), expected, rtol=1e-6, atol=0)
            twin.update_priorities(batch.index.cpu(), priority.cpu())
            for name, tensor in twin.state_dict()["storage"].items():
                assert torch.equal(rb.state_dict()["storage"][name].cpu(), tensor), name
    check_against_reference(rb, ref, draws=2)


@pytest.mark.parametrize("n_step,prioritized", [(1, False), (3, True)])
def test_sample_in_graph_of_an_empty_buffer_gives_zero_rows(n_step, prioritized):
    rb = dqnfast.ReplayBuffer(64, (4, 8, 8), num_envs=2, frame_stack=4, storage_device="cuda",
                              device="cuda", seed=0, n_step=n_step, prioritized=prioritized)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(rb.generator)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph):
        batch = rb.sample_in_graph(8)
    for tensor in batch:
        tensor.fill_(1)
    graph.replay()
    torch.cuda.synchronize()
    for tensor in batch:
        assert not tensor.any()


def test_gpu_priority_update_skips_entries_it_cannot_use():
    """No host reads on the GPU: invalid entries are skipped, valid ones applied."""
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda",
                              device="cuda", seed=0, n_step=2, prioritized=True)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
    for _ in range(10):
        rb.add(*streams.step())
    index = rb.sample(1).index
    before = {n: t.clone() for n, t in rb.state_dict()["storage"].items()}
    bad = torch.tensor([-1, 10**9, index.item(), index.item()], device="cuda")
    rb.update_priorities(bad, torch.tensor([1.0, 1.0, float("nan"), -2.0], device="cuda"))
    for name, tensor in rb.state_dict()["storage"].items():
        assert torch.equal(tensor, before[name]), name
    rb.update_priorities(torch.cat([bad, index]),
                         torch.tensor([1.0, 1.0, float("nan"), -2.0, 3.0], device="cuda"))
    env, number = decode_index(rb, index.item())
    got = rb.state_dict()["storage"]["priority"][env, number % 32].item()
    assert got == pytest.approx((3.0 + rb.priority_eps) ** rb.alpha, rel=1e-6)


def test_bad_add_on_gpu_changes_nothing():
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda",
                              device="cuda", seed=0)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
    for _ in range(5):
        rb.add(*streams.step())
    before = {n: t.clone() for n, t in rb.state_dict()["storage"].items()}
    obs, action, reward, next_obs, terminated, truncated = streams.step()
    with pytest.raises(ValueError, match="does not continue its obs"):
        rb.add(obs, action, reward, 255 - next_obs, terminated, truncated)
    for name, tensor in rb.state_dict()["storage"].items():
        assert torch.equal(tensor, before[name]), name


def test_bad_add_of_cuda_tensors_stores_nothing_and_is_reported_at_len():
    """The GPU checks CUDA inputs without the host waiting: the rejected call writes
    nothing, the next call that waits for the GPU raises, and adding goes on."""
    kwargs = dict(num_envs=2, frame_stack=4, seed=0)
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), storage_device="cuda", device="cuda", **kwargs)
    cpu = dqnfast.ReplayBuffer(64, (4, 6, 6), **kwargs)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
    for _ in range(5):
        step = streams.step()
        rb.add(*(torch.as_tensor(x).cuda() for x in step))
        cpu.add(*step)
    before = {n: t.clone() for n, t in rb.state_dict()["storage"].items()}
    obs, action, reward, next_obs, terminated, truncated = (torch.as_tensor(x).cuda()
                                                             for x in streams.step())
    rb.add(obs, action, reward, 255 - next_obs, terminated, truncated)  # queued, no raise
    for name, tensor in rb.state_dict()["storage"].items():
        assert torch.equal(tensor, before[name]), name
    with pytest.raises(ValueError, match=r"1 earlier add call\(s\) with CUDA tensors stored nothing"):
        len(rb)
    assert len(rb) == len(cpu) == 10  # reported once
    for _ in range(20):
        step = streams.step()
        rb.add(*(torch.as_tensor(x).cuda() for x in step))
        cpu.add(*step)
    for name, tensor in cpu.state_dict()["storage"].items():
        assert torch.equal(rb.state_dict()["storage"][name].cpu(), tensor), name


@pytest.mark.parametrize("field,corrupt,message,reason", [
    ("reward", lambda x: np.array([0.0, np.nan], np.float32), "rewards must be finite, got nan",
     "a non-finite reward"),
    ("action", lambda x: np.array([0, 6]), r"actions must lie in \[0, 6\), got 6",
     r"an action outside \[0, num_actions\)"),
    ("action", lambda x: np.array([-1, 0], np.int8), r"actions must lie in \[0, 6\), got -1",
     r"an action outside \[0, num_actions\)"),
    ("next_obs", lambda x: 255 - x, "does not continue its obs", "does not continue its obs"),
])
@pytest.mark.parametrize("inputs", ["numpy", "cuda"])
def test_bad_values_on_gpu_storage_store_nothing(field, corrupt, message, reason, inputs):
    """Host inputs are refused at once, CUDA inputs by the GPU, reported (with why) at
    the next call that waits for the GPU; either way nothing is stored."""
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda",
                              device="cuda", seed=0, num_actions=6)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
    for _ in range(5):
        rb.add(*streams.step())
    before = {n: t.clone() for n, t in rb.state_dict()["storage"].items()}
    step = dict(zip(("obs", "action", "reward", "next_obs", "terminated", "truncated"),
                    streams.step()))
    step[field] = corrupt(step[field])
    if inputs == "numpy":
        with pytest.raises(ValueError, match=message):
            rb.add(**step)
    else:
        rb.add(**{name: torch.as_tensor(x).cuda() for name, x in step.items()})
        with pytest.raises(ValueError, match=f"1 earlier add call.*held {reason}"):
            len(rb)
    for name, tensor in rb.state_dict()["storage"].items():
        assert torch.equal(tensor, before[name]), name
    assert len(rb) == 10


def test_non_finite_float_observations_in_cuda_tensors_are_rejected_on_the_gpu():
    rb = dqnfast.ReplayBuffer(16, (3,), num_envs=2, obs_dtype=torch.float32, storage_device="cuda",
                              device="cuda")
    obs = torch.zeros(2, 3, device="cuda")
    next_obs = obs + 1
    next_obs[1, 2] = float("inf")
    zeros = torch.zeros(2, dtype=torch.int64, device="cuda")
    rb.add(obs, zeros, zeros.float(), next_obs, zeros.bool(), zeros.bool())
    with pytest.raises(ValueError, match="held a non-finite observation"):
        len(rb)
    assert len(rb) == 0


@pytest.mark.parametrize("inputs", ["numpy", "cuda"])
def test_add_to_gpu_storage_never_waits_for_the_gpu(inputs):
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda",
                              device="cuda", seed=0)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
    steps = [streams.step() for _ in range(10)]
    if inputs == "cuda":
        steps = [tuple(torch.as_tensor(x).cuda() for x in step) for step in steps]
    rb.add(*steps[0])  # first call: lazy initialization may synchronize
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in steps[1:]:
            rb.add(*step, env_ids=np.array([1, 0]))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(rb) == 20


def test_preprocess_uploads_its_tables_once_and_can_be_captured():
    frames, prev = (torch.from_numpy(x).cuda() for x in ale_frame_pairs("pong", count=4))
    eager = dqnfast.preprocess_frames(frames, prev)  # uploads this geometry's tables
    out = torch.empty_like(eager)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        dqnfast.preprocess_frames(frames, prev, out=out)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(out, eager)
    graph = torch.cuda.CUDAGraph()
    out.zero_()
    with torch.cuda.graph(graph):
        dqnfast.preprocess_frames(frames, prev, out=out)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)


def test_host_storage_takes_cuda_inputs():
    """CUDA tensors added to a host buffer land before the host checks and copies them."""
    kwargs = dict(num_envs=3, frame_stack=4, seed=0)
    from_numpy = dqnfast.ReplayBuffer(90, (4, 84, 84), **kwargs)
    from_cuda = dqnfast.ReplayBuffer(90, (4, 84, 84), **kwargs)
    streams = EpisodeStreams(np.random.default_rng(0), 3, 4, (84, 84), np.uint8, end_prob=0.1)
    rng = np.random.default_rng(1)
    for _ in range(60):
        step = streams.step()
        ids = rng.permutation(3)[:rng.integers(1, 4)]
        from_numpy.add(*(x[ids] for x in step), env_ids=ids)
        from_cuda.add(*(torch.as_tensor(x[ids]).cuda() for x in step),
                      env_ids=torch.as_tensor(ids).cuda())
    for name, tensor in from_numpy.state_dict()["storage"].items():
        assert torch.equal(from_cuda.state_dict()["storage"][name], tensor), name


def test_cuda_and_cuda_index_are_one_device():
    index = torch.cuda.current_device()
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, device="cuda",
                              storage_device=f"cuda:{index}", seed=0)
    assert rb.device == rb.storage_device == torch.device("cuda", index)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
    for _ in range(5):
        rb.add(*streams.step())
    sampled, in_graph = rb.sample(8), rb.sample_in_graph(8)
    for a, b in zip(sampled, in_graph):  # no staging copy: the same tensors
        assert a.data_ptr() == b.data_ptr()


def test_add_frames_needs_host_storage():
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda")
    streams = EpisodeStreams(np.random.default_rng(1), 2, 4, (6, 6), np.uint8, end_prob=0.3)
    chunk, _ = chunk_of(streams)
    with pytest.raises(ValueError, match="add_frames needs host storage, this buffer is stored "
                                         "on cuda:0"):
        rb.add_frames(**chunk)
    assert len(rb) == 0
