"""The compiled ops as ops: each schema's tensors carry the names of the Python
storage, torch.library.opcheck passes on every op and device, and the fake kernels
refuse the shapes and dtypes the kernels refuse."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import dqnfast
from atari_frames import ale_frame_pairs
from conftest import CPU_AND_CUDA
from dqnfast import replay_storage
from dqnfast.replay_storage import ReplayStorage
from reference import EpisodeStreams, replay_op_args

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def test_counters_are_those_of_replay_layout_h():
    enum = re.search(r"enum Counter : int64_t \{(.*?)\};", (CSRC / "replay_layout.h").read_text(),
                     re.S).group(1)
    values = {name: int(value) for name, value in re.findall(r"k(\w+) = (\d+)", enum)}
    python = {"TransitionsWritten": replay_storage.TRANSITIONS_WRITTEN,
              "FramesWritten": replay_storage.FRAMES_WRITTEN,
              "FirstValid": replay_storage.FIRST_VALID, "StreamOpen": replay_storage.STREAM_OPEN,
              "StreamStart": replay_storage.STREAM_START,
              "NumCounters": replay_storage.NUM_COUNTERS}
    assert values == python


def test_storage_names_are_the_same_in_python_and_cpp():
    struct = re.search(r"struct ReplayStorage \{(.*?)\};", (CSRC / "replay_storage.h").read_text(),
                       re.S).group(1)
    pointers = re.findall(r"^\s*\w+\* (\w+);", struct, re.M)
    assert tuple(pointers) == ReplayStorage.RING_NAMES
    storage = ReplayStorage(2, 4, 8, (3, 3), torch.uint8, prioritized=True,
                            device=torch.device("cpu"))
    schema = [a.name for a in torch.ops.dqnfast.replay_add.default._schema.arguments]
    assert schema[:12] == [*ReplayStorage.RING_NAMES, "rejected_adds",
                           *ReplayStorage.PRIORITY_NAMES]
    assert set(storage.tensors()) == set(ReplayStorage.RING_NAMES + ReplayStorage.PRIORITY_NAMES)


def test_sampleable_total_counts_as_len():
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0, n_step=3)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8, end_prob=0.2)
    counts = []
    for _ in range(40):
        rb.add(*streams.step())
        counts.append(len(rb))
        # Each env's sampleable run, counted transition by transition.
        counters = rb._storage.counters.numpy()
        by_hand = 0
        for env in range(2):
            written, _, first_valid, stream_open, stream_start = counters[env]
            for n in range(first_valid, written):
                pending = stream_open and n >= stream_start and written - n < 3
                by_hand += not pending
        assert replay_storage.sampleable_total(counters, 3) == by_hand == len(rb)
    assert max(counts) > 0


@pytest.mark.parametrize("device", CPU_AND_CUDA)
@pytest.mark.parametrize("n_step,prioritized", [(1, False), (3, False), (3, True)])
def test_opcheck_replay_ops(device, n_step, prioritized):
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0, n_step=n_step,
                              prioritized=prioritized, storage_device=device, device=device)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8, end_prob=0.2)
    for _ in range(10):
        rb.add(*streams.step())
    for op, args in replay_op_args(rb, streams, 5, device=device).items():
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_opcheck_preprocessing_ops(device):
    frames, prev = (torch.from_numpy(x).to(device) for x in ale_frame_pairs("pong", count=2))
    out = torch.empty((2, 84, 84), dtype=torch.uint8, device=device)
    torch.library.opcheck(torch.ops.dqnfast.preprocess_frames.default,
                          (frames, prev, [0, 0, 210, 160], [84, 84], [0, 0, 84, 84], False, out))
    torch.library.opcheck(torch.ops.dqnfast.preprocess_frames.default,
                          (frames, None, [34, 0, 160, 160], [110, 84], [18, 0, 84, 84], False, out))
    planar = frames.permute(0, 3, 1, 2).contiguous()
    torch.library.opcheck(torch.ops.dqnfast.preprocess_frames.default,
                          (planar, None, [0, 0, 210, 160], [84, 84], [0, 0, 84, 84], True, out))
    stacks = torch.zeros((2, 4, 84, 84), dtype=torch.uint8, device=device)
    pushed = torch.empty_like(stacks)
    torch.library.opcheck(torch.ops.dqnfast.push_frames.default,
                          (stacks, out, torch.tensor([True, False], device=device), pushed))
    torch.library.opcheck(torch.ops.dqnfast.push_frames.default, (stacks, out, None, pushed))


def _wrong(tensor: torch.Tensor, how: str) -> torch.Tensor:
    """``tensor`` with one more row, or as float64 (int64 where it is float64)."""
    if how == "shape":
        return torch.empty((tensor.shape[0] + 1, *tensor.shape[1:]), dtype=tensor.dtype)
    return torch.empty(tensor.shape, dtype=torch.int64 if tensor.dtype == torch.float64
                       else torch.float64)


def _fake_arguments():
    """Valid arguments of every op: {op: args}, with the names of the tensor arguments
    each kernel checks against the others."""
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0, n_step=3,
                              prioritized=True)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8, end_prob=0.2)
    for _ in range(10):
        rb.add(*streams.step())
    ops = replay_op_args(rb, streams, 5)
    frames, prev = (torch.from_numpy(x) for x in ale_frame_pairs("pong", count=2))
    gray = torch.empty((2, 84, 84), dtype=torch.uint8)
    ops[torch.ops.dqnfast.preprocess_frames.default] = (
        frames, prev, [0, 0, 210, 160], [84, 84], [0, 0, 84, 84], False, gray)
    stacks = torch.zeros((2, 4, 84, 84), dtype=torch.uint8)
    ops[torch.ops.dqnfast.push_frames.default] = (stacks, gray, torch.tensor([True, False]),
                                                  torch.empty_like(stacks))
    return ops


# Inputs and outputs whose shape and dtype each fake checks, by op and argument name.
CHECKED = {
    "replay_add": ("obs", "next_obs", "new_action", "new_reward", "new_terminated",
                   "new_truncated"),
    "replay_add_frames": ("chunk_obs_pos", "new_action", "new_reward", "new_terminated",
                          "new_truncated"),
    "replay_sample": ("out_obs", "out_next_obs", "out_action", "out_reward", "out_terminated",
                      "out_discount", "out_index", "out_weight"),
    "replay_update_priorities": ("new_priority",),
    "preprocess_frames": ("prev_frames", "out"),
    "push_frames": ("frames", "reset", "out"),
}


@pytest.mark.parametrize("how", ["shape", "dtype"])
def test_fakes_refuse_what_the_kernels_refuse(how):
    """Each fake passes the valid arguments and raises, as the kernel does, where one
    checked input or output has a wrong shape or dtype."""
    refused = []
    for op, args in _fake_arguments().items():
        names = [a.name for a in op._schema.arguments]
        op_name = op._schema.name.split("::")[1]
        for name in CHECKED[op_name]:
            bad = list(args)
            i = names.index(name)
            bad[i] = _wrong(args[i], how)
            with pytest.raises((RuntimeError, TypeError, ValueError)):
                op(*bad)  # the kernel
            with FakeTensorMode() as mode:
                fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
                op(*fake)  # the valid call passes
                fake[i] = mode.from_tensor(bad[i])
                with pytest.raises(RuntimeError):
                    op(*fake)
            refused.append((op_name, name))
    assert len(refused) == sum(map(len, CHECKED.values()))
