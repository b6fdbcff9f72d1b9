"""CUDA kernels against their CPU twins, bit for bit. Skipped without a GPU."""
import types

import numpy as np
import pytest
import torch

import dqnfast
from atari_frames import GAMES, ale_frame_pairs
from reference import (EpisodeStreams, NaiveReplayBuffer, check_against_reference,
                       check_batch_row, decode_index, replay_op_args)

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


@pytest.mark.parametrize("frame_stack,frame_shape,n_step,prioritized", [
    (4, (84, 84), 1, False), (1, (4,), 1, False), (3, (5, 7), 1, False), (4, (84, 84), 3, True)])
def test_gpu_storage_equals_cpu_storage(frame_stack, frame_shape, n_step, prioritized):
    num_envs = 3
    obs_shape = (frame_stack, *frame_shape) if frame_stack > 1 else frame_shape
    dtype = torch.float32 if frame_shape == (4,) else torch.uint8
    kwargs = dict(num_envs=num_envs, frame_stack=frame_stack, obs_dtype=dtype, seed=0,
                  frame_capacity=num_envs * 70,  # few spare frames: early evictions too
                  n_step=n_step, prioritized=prioritized)
    cpu = dqnfast.ReplayBuffer(num_envs * 50, obs_shape, **kwargs)
    gpu = dqnfast.ReplayBuffer(num_envs * 50, obs_shape, storage_device="cuda", device="cuda", **kwargs)
    streams = EpisodeStreams(np.random.default_rng(1), num_envs, frame_stack, frame_shape,
                             np.float32 if dtype == torch.float32 else np.uint8, end_prob=0.1,
                             silent_reset_prob=0.02, low_entropy=True)
    rng = np.random.default_rng(2)
    for step in range(400):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        ids = rng.permutation(num_envs)[:rng.integers(1, num_envs + 1)]
        for rb in (cpu, gpu):
            rb.add(obs[ids], action[ids], reward[ids], next_obs[ids], terminated[ids],
                   truncated[ids], env_ids=ids)
        if step % 50 == 49:
            for name, tensor in cpu.state_dict()["storage"].items():
                assert torch.equal(gpu.state_dict()["storage"][name].cpu(), tensor), name
            bits = torch.randint(0, 2**62, (64,))
            outs = []
            for rb, device in ((cpu, "cpu"), (gpu, "cuda")):
                out = {n: torch.empty_like(t, device=device) for n, t in cpu.sample(64)._asdict().items()}
                dqnfast.ops.replay_sample(rb._storage, bits.to(device), frame_stack, n_step,
                                          rb.gamma, rb.beta, out)
                outs.append(out)
            for name in outs[0]:
                assert torch.equal(outs[1][name].cpu(), outs[0][name]), name


def test_sample_captured_in_cuda_graph_stays_valid_as_buffer_grows():
    num_envs, k = 4, 4
    rb = dqnfast.ReplayBuffer(num_envs * 100, (k, 8, 8), num_envs=num_envs, frame_stack=k,
                              storage_device="cuda", device="cuda", seed=0)
    ref = NaiveReplayBuffer.like(rb)
    streams = EpisodeStreams(np.random.default_rng(0), num_envs, k, (8, 8), np.uint8, end_prob=0.05)

    def add(steps):
        for _ in range(steps):
            obs, action, reward, next_obs, terminated, truncated = streams.step()
            rb.add(obs, action, reward, next_obs, terminated, truncated)
            ref.add(obs, action, reward, next_obs, terminated, truncated=truncated)

    add(5)  # 20 transitions: fewer than the batch, which draws with replacement
    generator = torch.Generator(device="cuda").manual_seed(0)
    out = {name: torch.empty(shape, dtype=dtype, device="cuda") for name, shape, dtype in (
        ("obs", (32, k, 8, 8), torch.uint8), ("next_obs", (32, k, 8, 8), torch.uint8),
        ("action", 32, torch.int64), ("reward", 32, torch.float32),
        ("terminated", 32, torch.bool), ("discount", 32, torch.float32),
        ("index", 32, torch.int64), ("weight", 32, torch.float32))}
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        graph.register_generator_state(generator)
        with torch.cuda.graph(graph):
            bits = torch.randint(0, 2**62, (32,), device="cuda", generator=generator)
            dqnfast.ops.replay_sample(rb._storage, bits, k, rb.n_step, rb.gamma, rb.beta, out)
    batch = types.SimpleNamespace(**out)
    for _ in range(30):  # the buffer grows, wraps, evicts; the graph reads its counters
        add(17)
        graph.replay()
        torch.cuda.synchronize()
        expected = ref.sampleable()
        for i, index in enumerate(out["index"].tolist()):
            key = decode_index(rb, index)
            assert key in expected, f"sampled transition {key} is not sampleable"
            check_batch_row(batch, i, expected[key])
    check_against_reference(rb, ref, draws=2)


def test_opcheck_cuda_ops():
    frames, prev = (torch.from_numpy(x).cuda() for x in ale_frame_pairs("pong", count=2))
    out = torch.empty((2, 84, 84), dtype=torch.uint8, device="cuda")
    torch.library.opcheck(torch.ops.dqnfast.preprocess_frames.default,
                          (frames, prev, [0, 0, 210, 160], [84, 84], [0, 0, 84, 84], False, out))
    stacks = torch.zeros((2, 4, 84, 84), dtype=torch.uint8, device="cuda")
    torch.library.opcheck(torch.ops.dqnfast.push_frames.default,
                          (stacks, out, torch.tensor([True, False], device="cuda"),
                           torch.empty_like(stacks)))
    for n_step, prioritized in ((1, False), (3, True)):
        rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda",
                                  device="cuda", seed=0, n_step=n_step, prioritized=prioritized)
        streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8)
        for _ in range(10):
            rb.add(*streams.step())
        for op, args in replay_op_args(rb, streams, 5, device="cuda").items():
            torch.library.opcheck(op, args)


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
