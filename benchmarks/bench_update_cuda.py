"""GPU update-step benchmarks: eager against CUDA graphs, and the floor.

    python -m pytest benchmarks/bench_update_cuda.py --benchmark-only     (skips without a GPU)

One update = sample a batch of 32 from a replay buffer of 50,000 Atari transitions,
the DQN loss of the Nature CNN (Huber), backward, fused Adam step. Each timed round
runs ``UPDATES_PER_ROUND`` updates and waits for the GPU once; ``extra_info`` holds
``us_per_update``. Variants (``dqnfast.update``):

  eager-host-buffer    Update, buffer in pinned host memory, batches copied to the GPU
  eager-gpu-buffer     Update, buffer in GPU memory (sampling reads its size on the host)
  graph-host-buffer    GraphedUpdate, host buffer: the buffer fills the batch, a graph the rest
  graph-gpu-buffer     GraphedUpdate, GPU buffer: one graph replay per update, sampling included

The floor (``floor_us`` in extra_info): the update's FLOPs (counted by
``torch.utils.flop_counter`` on one eager update) at the GPU's dense FP32 rate, or its
bytes (the batch, and parameters, gradients and Adam moments read and written) at
memory bandwidth, whichever is larger. Both rates are measured on this GPU in the same
run (``gpu_peaks``: a float32 matrix product and a device-to-device copy), and
``extra_info`` records them.
"""
import copy

import pytest
import torch

import dqnfast
from dqnfast.loss import dqn_loss
from dqnfast.models import NatureDQN
from dqnfast.update import GraphedUpdate, Update

if not torch.cuda.is_available() or not dqnfast.ops.has_cuda_kernels():
    pytest.skip("needs a GPU and dqnfast's CUDA kernels", allow_module_level=True)

from bench_cuda_ops import filled_buffer  # noqa: E402
from gpu_peaks import fp32_tflops, memory_gbps  # noqa: E402

UPDATES_PER_ROUND = 200
BATCH_SIZE = 32
VARIANTS = {
    "eager-host-buffer": (Update, "cpu"),
    "eager-gpu-buffer": (Update, "cuda"),
    "graph-host-buffer": (GraphedUpdate, "cpu"),
    "graph-gpu-buffer": (GraphedUpdate, "cuda"),
}


def floor_us(q_network, target_network, optimizer, replay):
    from torch.utils.flop_counter import FlopCounterMode
    batch = replay.sample(BATCH_SIZE)
    with FlopCounterMode(display=False) as counter:
        result = dqn_loss(q_network, target_network, batch.obs, batch.action, batch.reward,
                          batch.next_obs, batch.terminated, gamma=0.99)
        optimizer.zero_grad()
        result.loss.backward()
    flops = counter.get_total_flops()
    parameter_bytes = sum(p.numel() * p.element_size() for p in q_network.parameters())
    # read by both forwards and the backward, gradients written and read, Adam reads
    # parameters, gradients and two moments and writes parameters and moments.
    moved = parameter_bytes * (3 + 2 + 7) + 2 * batch.obs.numel()
    return max(flops / (fp32_tflops() * 1e12), moved / (memory_gbps() * 1e9)) * 1e6, flops, moved


@pytest.fixture(scope="module")
def buffers():
    return {device: filled_buffer(device, 50_000) for device in ("cpu", "cuda")}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_update_cuda(benchmark, buffers, variant):
    kind, storage_device = VARIANTS[variant]
    benchmark.group = "update-cuda-atari-cnn"
    torch.manual_seed(0)
    q_network = NatureDQN((4, 84, 84), 6).cuda()
    target_network = copy.deepcopy(q_network).requires_grad_(False)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True, capturable=True)
    replay = buffers[storage_device]
    update = kind(q_network, target_network, optimizer, replay, batch_size=BATCH_SIZE)
    for _ in range(10):  # warm-up, capture
        update()
    torch.cuda.synchronize()

    def round_of_updates():
        for _ in range(UPDATES_PER_ROUND):
            update()
        torch.cuda.synchronize()

    benchmark.pedantic(round_of_updates, rounds=10, warmup_rounds=1)
    floor, flops, moved = floor_us(q_network, target_network, optimizer, replay)
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(), us_per_update=round(
            benchmark.stats.stats.median / UPDATES_PER_ROUND * 1e6, 1),
        floor_us=round(floor, 1), fp32_tflops=round(fp32_tflops(), 1),
        memory_gbps=round(memory_gbps()), update_gflop=round(flops / 1e9, 3),
        update_mbytes=round(moved / 1e6, 1))
