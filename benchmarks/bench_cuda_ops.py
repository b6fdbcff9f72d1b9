"""GPU benchmarks of the replay buffer and the frame preprocessing (skip without a GPU).

    python -m pytest benchmarks/bench_cuda_ops.py --benchmark-only

Replay ("sample-cuda" group): sampling batches of 32 and 1024 Atari transitions,
(4, 84, 84) uint8 stacks rebuilt from stored frames,

  gpu-buffer      the buffer in GPU memory, 1,000,000 transitions (8 envs, episodes of
                  500 steps): the gather kernel writes the batch in GPU memory
  pinned-host     the same transitions in host memory (200,000 of them, to keep the fill
                  short): gathered on the CPU into pinned memory, one asynchronous copy

Preprocessing ("preprocess-cuda" group): ``preprocess_frames`` of 256 real 210x160 RGB
frame pairs (Pong, Breakout, Space Invaders, Seaquest, MsPacman) into 84x84 gray.

Each timed round runs ``CALLS_PER_ROUND`` calls, then waits for the GPU. ``sample()``
itself waits too: it reads the buffer's size on the host at every call (it refuses a
batch larger than what is stored), a round trip included in these timings; the
training loop's graphed update samples inside its CUDA graph (``sample_in_graph``),
which reads nothing on the host. ``extra_info`` holds ``us_per_call``, the rate
(``transitions_per_second`` or ``frames_per_second``) and ``floor_us``: the bytes each
call must read and write at the memory bandwidth measured on this GPU
(``gpu_peaks.memory_gbps``); for the pinned path, the copy over PCIe
(``DQNFAST_PCIE_GBPS``, default 25 GB/s) is its floor.
"""
import os

import numpy as np
import pytest
import torch

import dqnfast

if not torch.cuda.is_available() or not dqnfast.ops.has_cuda_kernels():
    pytest.skip("needs a GPU and dqnfast's CUDA kernels", allow_module_level=True)

from atari_frames import GAMES, ale_frame_pairs  # noqa: E402
from gpu_peaks import memory_gbps  # noqa: E402

CALLS_PER_ROUND = 100
PCIE_GBPS = float(os.environ.get("DQNFAST_PCIE_GBPS", "25"))
FRAME_BYTES = 84 * 84
NUM_ENVS = 8


def filled_buffer(storage_device, transitions):
    """Transitions whose stacks shift by one frame per step, from a pool of random
    frames on the GPU (so filling costs no host-to-device copies), episodes of 500."""
    replay = dqnfast.ReplayBuffer(transitions, (4, 84, 84), num_envs=NUM_ENVS, frame_stack=4,
                                  device="cuda", storage_device=storage_device, seed=0)
    pool = torch.randint(0, 256, (NUM_ENVS, 1024 + 5, 84, 84), dtype=torch.uint8, device="cuda")
    if storage_device == "cpu":
        pool = pool.cpu()
    action = torch.zeros(NUM_ENVS, dtype=torch.int64, device=pool.device)
    reward = torch.ones(NUM_ENVS, device=pool.device)
    truncated = torch.zeros(NUM_ENVS, dtype=torch.bool, device=pool.device)
    for step in range(transitions // NUM_ENVS):
        t = step % 1024
        ends = torch.full((NUM_ENVS,), step % 500 == 499, device=pool.device)
        replay.add(pool[:, t:t + 4], action, reward, pool[:, t + 1:t + 5], ends, truncated)
    torch.cuda.synchronize()
    return replay


@pytest.fixture(scope="module")
def buffers():
    return {"gpu-buffer": filled_buffer("cuda", 1_000_000),
            "pinned-host": filled_buffer("cpu", 200_000)}


def timed(benchmark, call):
    def round_of_calls():
        for _ in range(CALLS_PER_ROUND):
            call()
        torch.cuda.synchronize()

    for _ in range(3):
        call()
    benchmark.pedantic(round_of_calls, rounds=20, warmup_rounds=1)
    return benchmark.stats.stats.median / CALLS_PER_ROUND


@pytest.mark.parametrize("batch_size", [32, 1024])
@pytest.mark.parametrize("path", ["gpu-buffer", "pinned-host"])
def test_sample_cuda(benchmark, buffers, path, batch_size):
    benchmark.group = f"sample-cuda-{batch_size}"
    replay = buffers[path]
    seconds = timed(benchmark, lambda: replay.sample(batch_size))
    stack_bytes = batch_size * 2 * 4 * FRAME_BYTES  # obs and next_obs
    if path == "gpu-buffer":
        floor = 2 * stack_bytes / (memory_gbps() * 1e9)  # read the frames, write the stacks
    else:
        floor = stack_bytes / (PCIE_GBPS * 1e9)
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(), memory_gbps=round(memory_gbps()), stored=len(replay),
        us_per_call=round(seconds * 1e6, 2),
        transitions_per_second=round(batch_size / seconds), floor_us=round(floor * 1e6, 2))


@pytest.mark.parametrize("with_prev", [True, False], ids=["max-of-pair", "single"])
def test_preprocess_cuda(benchmark, with_prev):
    benchmark.group = "preprocess-cuda"
    pairs = [ale_frame_pairs(game, count=256 // len(GAMES) + 1) for game in GAMES]
    frames = torch.from_numpy(np.concatenate([f for f, _ in pairs])[:256]).cuda()
    prev = torch.from_numpy(np.concatenate([p for _, p in pairs])[:256]).cuda() if with_prev else None
    out = torch.empty((256, 84, 84), dtype=torch.uint8, device="cuda")
    seconds = timed(benchmark, lambda: dqnfast.preprocess_frames(frames, prev, out=out))
    moved = frames.numel() * (2 if with_prev else 1) + out.numel()
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(), us_per_call=round(seconds * 1e6, 2),
        frames_per_second=round(256 / seconds), memory_gbps=round(memory_gbps()),
        floor_us=round(moved / (memory_gbps() * 1e9) * 1e6, 2))
