"""dqnfast.ReplayBuffer against a naive buffer of full copies; with GPU storage (marked
``cuda``) against the same buffer on the host, bit for bit."""
import copy
import pickle
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dqnfast
from reference import (EpisodeStreams, NaiveReplayBuffer, check_against_reference,
                       check_batch_row, chunk_of, decode_index, per_env_sampleable_counts)

NP_DTYPES = {torch.uint8: np.uint8, torch.float32: np.float32}


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_samples_match_reference(data):
    """Random episodes (terminations, truncations, silent restarts), several envs,
    partial adds, wrap-arounds and frame evictions, n-step windows of n in {1, 2, 3, 5}."""
    num_envs = data.draw(st.integers(1, 4), label="num_envs")
    k = data.draw(st.integers(1, 4), label="frame_stack")
    n_step = data.draw(st.sampled_from([1, 2, 3, 5]), label="n_step")
    gamma = data.draw(st.sampled_from([0.0, 0.5, 0.99, 1.0]), label="gamma")
    frame_shape = data.draw(st.sampled_from([(3,), (2, 5), (1, 3, 2), (7, 1)]), label="frame_shape")
    dtype = data.draw(st.sampled_from([torch.uint8, torch.float32]), label="dtype")
    per_env = data.draw(st.integers(n_step, 10), label="per_env")
    capacity = per_env * num_envs + data.draw(st.integers(0, num_envs - 1), label="spare")
    frame_capacity = data.draw(
        st.none() | st.integers((k + n_step) * num_envs, (per_env * (k + 1) + 2) * num_envs),
        label="frame_capacity")
    streams = EpisodeStreams(
        np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed")), num_envs, k,
        frame_shape, NP_DTYPES[dtype],
        end_prob=data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]), label="end_prob"),
        silent_reset_prob=data.draw(st.sampled_from([0.0, 0.1]), label="silent_reset_prob"),
        low_entropy=data.draw(st.booleans(), label="low_entropy"))
    obs_shape = (k, *frame_shape) if k > 1 else frame_shape
    rb = dqnfast.ReplayBuffer(capacity, obs_shape, num_envs=num_envs, frame_stack=k,
                              obs_dtype=dtype, seed=0, frame_capacity=frame_capacity,
                              n_step=n_step, gamma=gamma,
                              prioritized=data.draw(st.booleans(), label="prioritized"))
    ref = NaiveReplayBuffer.like(rb)
    steps = data.draw(st.integers(1, 6 * per_env + 8), label="steps")
    partial_prob = data.draw(st.sampled_from([0.0, 0.3]), label="partial_prob")
    rng = np.random.default_rng(steps)
    for step in range(steps):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        if rng.random() < partial_prob:
            # Some envs only, in any order (a vector env's reset step leaves some out).
            ids = rng.permutation(num_envs)[:rng.integers(0, num_envs + 1)]
            rb.add(obs[ids], action[ids], reward[ids], next_obs[ids], terminated[ids],
                   truncated[ids], env_ids=ids)
            ref.add(obs[ids], action[ids], reward[ids], next_obs[ids], terminated[ids], ids,
                    truncated=truncated[ids])
        else:
            rb.add(obs, action, reward, next_obs, terminated, truncated)
            ref.add(obs, action, reward, next_obs, terminated, truncated=truncated)
        if len(rb) == 0:
            assert not ref.sampleable()
            continue
        if step % 5 == 4:
            check_against_reference(rb, ref, draws=3)
    if len(rb):
        # Many draws see every sampleable transition.
        seen, expected = check_against_reference(rb, ref, draws=40)
        assert seen == set(expected)


@pytest.mark.parametrize("frame_stack", [1, 4])
def test_full_buffer_holds_capacity_when_frames_suffice(frame_stack):
    num_envs, capacity = 3, 31
    streams = EpisodeStreams(np.random.default_rng(1), num_envs, frame_stack, (5, 5), np.uint8,
                             end_prob=0.3)
    obs_shape = (frame_stack, 5, 5) if frame_stack > 1 else (5, 5)
    # Enough frames for any episode pattern: k + 1 per transition.
    rb = dqnfast.ReplayBuffer(capacity, obs_shape, num_envs=num_envs, frame_stack=frame_stack,
                              frame_capacity=capacity * (frame_stack + 1))
    for step in range(100):
        rb.add(*streams.step())
        assert len(rb) == min(step + 1, capacity // num_envs) * num_envs
    assert len(rb) == 30


def test_frame_reserve_is_small_for_atari_frames():
    rb = dqnfast.ReplayBuffer(100_000, (4, 84, 84), num_envs=8, frame_stack=4)
    per_transition = rb.nbytes / rb.capacity
    assert 84 * 84 < per_transition < 7_200  # "about 7.1 KB", all metadata included


def test_sampling_is_uniform_over_stored_transitions():
    """Envs hold different numbers of transitions (short episodes evict early)."""
    num_envs = 3
    streams = EpisodeStreams(np.random.default_rng(2), num_envs, 4, (2, 2), np.uint8,
                             end_prob=0.4)
    rb = dqnfast.ReplayBuffer(150, (4, 2, 2), num_envs=num_envs, frame_stack=4, seed=3,
                              frame_capacity=3 * 90)
    for _ in range(300):
        rb.add(*streams.step())
    counts = per_env_sampleable_counts(rb)
    assert len(set(counts)) > 1, "the test wants envs with different valid counts"
    n = len(rb)
    draws = 4000 * n // 100
    hits = {}
    for _ in range(draws // 100):
        for reward in rb.sample(100).reward.tolist():
            hits[reward] = hits.get(reward, 0) + 1
    assert len(hits) == n
    observed = np.array(list(hits.values()), dtype=np.float64)
    mean = observed.sum() / n
    chi2 = ((observed - mean) ** 2 / mean).sum()
    # Chi-square with n - 1 degrees of freedom: mean n - 1, sd sqrt(2(n - 1)).
    assert chi2 < (n - 1) + 6 * np.sqrt(2 * (n - 1)), chi2


def test_vector_observations_float32():
    rb = dqnfast.ReplayBuffer(10, (4,), num_envs=2, obs_dtype=torch.float32, seed=0)
    obs = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    rb.add(obs, [0, 1], [1.0, 2.0], obs + 1, [True, False], [False, True])
    batch = rb.sample(2)
    assert batch.obs.dtype == torch.float32 and batch.obs.shape == (2, 4)
    for i, reward in enumerate(batch.reward.tolist()):
        e = int(reward) - 1
        np.testing.assert_array_equal(batch.obs[i].numpy(), obs[e])
        np.testing.assert_array_equal(batch.next_obs[i].numpy(), obs[e] + 1)
        assert batch.terminated[i].item() == (e == 0)


def test_accepts_torch_and_noncontiguous_inputs():
    rb = dqnfast.ReplayBuffer(8, (2, 3, 3), frame_stack=2, seed=0)
    stacks = torch.arange(3 * 3 * 3, dtype=torch.uint8).reshape(1, 3, 3, 3)
    obs = stacks[:, :2].transpose(2, 3)  # non-contiguous
    next_obs = stacks[:, 1:].transpose(2, 3)
    rb.add(obs, torch.tensor([2]), torch.tensor([0.5]), next_obs, torch.tensor([False]),
           torch.tensor([0]))
    batch = rb.sample(1)
    assert torch.equal(batch.obs[0], obs[0]) and torch.equal(batch.next_obs[0], next_obs[0])
    assert batch.action.item() == 2 and batch.reward.item() == 0.5


# -- bad input: a clear error, and the buffer exactly as it was ------------------------------

def snapshot(rb):
    state = rb.state_dict()
    return {name: t.clone() for name, t in state["storage"].items()}, state["generator"].clone()


def assert_unchanged(rb, before):
    storage, generator = before
    state = rb.state_dict()
    for name, t in storage.items():
        assert torch.equal(state["storage"][name], t), name
    assert torch.equal(state["generator"], generator)


@pytest.fixture
def atari_rb():
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8, end_prob=0.2)
    for _ in range(10):
        rb.add(*streams.step())
    return rb, streams


def good_step(streams):
    obs, action, reward, next_obs, terminated, truncated = streams.step()
    return dict(obs=obs, action=action, reward=reward, next_obs=next_obs,
                terminated=terminated, truncated=truncated)


BAD_ADDS = [
    ("obs", lambda s: s["obs"][:, 1:], ValueError, r"expected obs of shape \[2, 4, 6, 6\]"),
    ("obs", lambda s: s["obs"][:1], ValueError, r"expected obs of shape \[2, 4, 6, 6\]"),
    ("obs", lambda s: s["obs"].astype(np.float32), TypeError, "expected torch.uint8 obs, got torch.float32"),
    ("next_obs", lambda s: s["next_obs"][..., :5], ValueError, "expected next_obs of shape"),
    ("next_obs", lambda s: 255 - s["next_obs"], ValueError, "does not continue its obs"),
    ("action", lambda s: s["action"].astype(np.float32), TypeError, "expected action of an integer dtype"),
    ("action", lambda s: s["action"][:1], ValueError, r"expected action of shape \[2\]"),
    ("reward", lambda s: s["reward"][:, None], ValueError, r"expected reward of shape \[2\]"),
    ("reward", lambda s: np.array([True, False]), TypeError, "expected reward of a real dtype"),
    ("terminated", lambda s: np.array([0, 2]), ValueError, "expected terminated as bools"),
    ("truncated", lambda s: np.array([False]), ValueError, r"expected truncated of shape \[2\]"),
    ("obs", lambda s: "frames", TypeError, "expected obs as a numpy array or torch tensor"),
    ("env_ids", lambda s: np.array([1, 1]), ValueError, "env_ids must be distinct, got 1 twice"),
    ("env_ids", lambda s: np.array([0, 2]), ValueError, r"env_ids must lie in \[0, 2\), got 2"),
    ("env_ids", lambda s: np.array([0.0, 1.0]), TypeError, "expected env_ids of an integer dtype"),
    ("env_ids", lambda s: np.array([1]), ValueError, r"expected obs of shape \[1, 4, 6, 6\]"),
    ("reward", lambda s: np.array([1.0, np.nan], np.float32), ValueError,
     "rewards must be finite, got nan at row 1"),
    ("reward", lambda s: np.array([np.inf, 0.0]), ValueError, "rewards must be finite, got inf at row 0"),
    ("reward", lambda s: np.array([0.0, -np.inf]), ValueError, "rewards must be finite, got -inf at row 1"),
    ("action", lambda s: np.array([0, -1]), ValueError, r"actions must lie in \[0, inf\), got -1 at row 1"),
    # A narrower integer dtype is taken by value: int8 -1 is -1, never 255.
    ("action", lambda s: np.array([-1, 0], np.int8), ValueError, r"got -1 at row 0"),
]


@pytest.mark.parametrize("field,corrupt,error,message", BAD_ADDS)
def test_bad_add_is_rejected_and_changes_nothing(atari_rb, field, corrupt, error, message):
    rb, streams = atari_rb
    step = good_step(streams)
    step[field] = corrupt(step)
    before = snapshot(rb)
    with pytest.raises(error, match=message):
        rb.add(**step)
    assert_unchanged(rb, before)


@pytest.mark.parametrize("prioritized", [False, True])
def test_add_frames_is_one_add_per_row(prioritized):
    buffers = [dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0, n_step=2,
                                    prioritized=prioritized) for _ in range(2)]
    streams = EpisodeStreams(np.random.default_rng(1), 2, 4, (6, 6), np.uint8, end_prob=0.3)
    for _ in range(12):  # several chunks, episode ends inside some, frames wrapping around
        chunk, adds = chunk_of(streams, steps=5)
        priority = np.random.default_rng(len(chunk["obs_pos"])).random(5).astype(np.float32)
        chunk["frames"].setflags(write=False)  # read-only input is fine: it is only read
        buffers[0].add_frames(**chunk, priority=priority if prioritized else None)
        for row, (obs, action, reward, next_obs, terminated, truncated) in enumerate(adds):
            buffers[1].add(obs, action, reward, next_obs, terminated, truncated, env_ids=[1],
                           priority=priority[row:row + 1] if prioritized else None)
    for name, tensor in buffers[0]._storage.tensors().items():
        assert torch.equal(tensor, buffers[1]._storage.tensors()[name]), name


BAD_ADD_FRAMES = [
    ("obs_pos", lambda c: c["obs_pos"] + 100, ValueError, r"obs_pos must lie in \[0, "),
    ("obs_pos", lambda c: c["obs_pos"][:2], ValueError, r"expected obs_pos of shape \[3\]"),
    ("env_ids", lambda c: c["env_ids"] + 1, ValueError, r"env_ids must lie in \[0, 2\), got 2"),
    ("frames", lambda c: c["frames"][:, :5], ValueError, r"expected frames of shape \[-1, 6, 6\]"),
    ("frames", lambda c: c["frames"].astype(np.float32), TypeError, "expected torch.uint8 frames"),
    ("reward", lambda c: c["reward"][:1], ValueError, r"expected reward of shape \[3\]"),
    ("priority", lambda c: np.ones(3, np.float32), ValueError,
     r"add_frames\(priority=...\) needs a prioritized buffer"),
    ("reward", lambda c: np.array([0.0, 0.0, np.nan], np.float32), ValueError,
     "rewards must be finite, got nan at row 2"),
    ("action", lambda c: np.array([0, -3, 0]), ValueError, r"actions must lie in \[0, inf\), got -3"),
]


@pytest.mark.parametrize("field,corrupt,error,message", BAD_ADD_FRAMES)
def test_bad_add_frames_is_rejected_and_changes_nothing(atari_rb, field, corrupt, error, message):
    rb, streams = atari_rb
    chunk, _ = chunk_of(streams)
    chunk[field] = corrupt(chunk)
    before = snapshot(rb)
    with pytest.raises(error, match=message):
        rb.add_frames(**chunk)
    assert_unchanged(rb, before)


def test_actions_out_of_range_are_refused_where_the_buffer_knows_the_count():
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0, num_actions=6)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8, end_prob=0.2)
    for _ in range(5):
        rb.add(*streams.step())
    for bad in (np.array([0, 6]), np.array([300, 0]), np.array([2**40, 0]),
                np.array([255, 0], np.uint8), torch.tensor([0, -1], dtype=torch.int16)):
        step = good_step(streams)
        step["action"] = bad
        before = snapshot(rb)
        with pytest.raises(ValueError, match=r"actions must lie in \[0, 6\), got -?\d+ at row"):
            rb.add(**step)
        assert_unchanged(rb, before)
    chunk, _ = chunk_of(streams)
    chunk["action"] = np.array([1, 2, 6])
    before = snapshot(rb)
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 6\), got 6 at row 2"):
        rb.add_frames(**chunk)
    assert_unchanged(rb, before)
    assert pickle.loads(pickle.dumps(rb)).num_actions == 6


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32])
def test_narrow_integer_actions_are_stored_by_value(dtype):
    rb = dqnfast.ReplayBuffer(8, (3,), obs_dtype=torch.float32, num_actions=200)
    top = np.iinfo(dtype).max if np.iinfo(dtype).max < 200 else 199
    rb.add(np.zeros((1, 3), np.float32), np.array([top], dtype), [1.0], np.ones((1, 3), np.float32),
           [True], [False])
    assert rb.sample(1).action.item() == top


@pytest.mark.parametrize("frame_stack", [1, 4])
def test_non_finite_float_observations_are_refused(frame_stack):
    shape = (frame_stack, 3) if frame_stack > 1 else (3,)
    rb = dqnfast.ReplayBuffer(16, shape, num_envs=2, frame_stack=frame_stack,
                              obs_dtype=torch.float32)

    def step_from(obs):
        return obs, (np.concatenate([obs[:, 1:], obs[:, :1] + 100], 1) if frame_stack > 1
                     else obs + 1)

    obs, next_obs = step_from(np.arange(2 * np.prod(shape), dtype=np.float32).reshape(2, *shape))
    rb.add(obs, [0, 1], [0.0, 0.0], next_obs, [False, False], [False, False])
    # The oldest frame of obs and the newest of next_obs: values the shift check
    # does not compare.
    where = {"obs": (0,) * (len(shape) - 1), "next_obs": (-1,) * (len(shape) - 1)}
    for field, row, value in (("obs", 1, np.nan), ("next_obs", 0, np.inf), ("next_obs", 1, -np.inf)):
        step = dict(zip(("obs", "next_obs"), step_from(next_obs.copy())))
        step[field][(row, *where[field], -1)] = value
        before = snapshot(rb)
        with pytest.raises(ValueError, match=f"{field} must be finite, got {value} in row {row}"):
            rb.add(step["obs"], [0, 1], [0.0, 0.0], step["next_obs"], [False, False],
                   [False, False])
        assert_unchanged(rb, before)
    frames = np.zeros((3, 3), np.float32)
    frames[2, 1] = np.nan
    with pytest.raises(ValueError, match="frames must be finite, got nan in row 2"):
        dqnfast.ReplayBuffer(16, (3,), obs_dtype=torch.float32).add_frames(
            frames, [0], [0], [0.0], [False], [False], env_ids=[0])


@pytest.mark.parametrize("field,value,message", [
    ("reward", np.array([0.0, np.nan], np.float32), "rewards must be finite, got nan at row 1"),
    ("action", np.array([3, 0]), r"actions must lie in \[0, 3\), got 3 at row 0"),
    ("action", np.array([0, -1], np.int8), r"actions must lie in \[0, 3\), got -1 at row 1"),
    ("obs", None, "obs must be finite, got nan in row 0"),
])
def test_host_checks_before_a_gpu_upload_say_what_the_op_says(field, value, message):
    """GPU storage checks host inputs on the host (no waiting for the GPU afterwards):
    the same refusals, in the words of the op that host storage runs."""
    from dqnfast.replay_inputs import as_float32, as_int64, check_host_rows
    obs = np.zeros((2, 4, 3), np.float32)
    step = dict(obs=obs, next_obs=obs.copy(), action=np.array([0, 1]),
                reward=np.zeros(2, np.float32))
    if field == "obs":
        step["obs"] = obs.copy()
        step["obs"][0, 0, 0] = np.nan
    else:
        step[field] = value
    rb = dqnfast.ReplayBuffer(16, (4, 3), num_envs=2, frame_stack=4, obs_dtype=torch.float32,
                              num_actions=3)
    with pytest.raises(ValueError, match=message):
        rb.add(step["obs"], step["action"], step["reward"], step["next_obs"], [False] * 2,
               [False] * 2)
    with pytest.raises(ValueError, match=message):
        check_host_rows(torch.from_numpy(step["obs"]), torch.from_numpy(step["next_obs"]),
                         as_int64(torch.from_numpy(step["action"]), "action"),
                         as_float32(torch.from_numpy(step["reward"]), "reward"), 4, 3)


@pytest.mark.parametrize("batch_size,error,message", [
    (0, ValueError, "batch_size must be at least 1"),
    (21, ValueError, "batch_size 21 is larger than the 20 transitions stored"),
    (2.0, TypeError, "batch_size must be an int"),
])
def test_bad_sample_is_rejected(atari_rb, batch_size, error, message):
    rb, _ = atari_rb
    before = snapshot(rb)
    with pytest.raises(error, match=message):
        rb.sample(batch_size)
    assert_unchanged(rb, before)


def test_sampling_empty_buffer():
    rb = dqnfast.ReplayBuffer(4, (3,), obs_dtype=torch.float32)
    with pytest.raises(ValueError, match="cannot sample from an empty replay buffer"):
        rb.sample(1)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(capacity=3, num_envs=4), ValueError, "capacity must be at least 4, got 3"),
    (dict(capacity=0), ValueError, "capacity must be at least 1"),
    (dict(frame_stack=4, obs_shape=(3, 8, 8)), ValueError, "obs_shape must start with 4"),
    (dict(frame_stack=4, frame_capacity=4), ValueError, "frame_capacity must be at least 5"),
    (dict(obs_shape=(8, 0)), ValueError, "obs_shape must be a non-empty tuple of positive ints"),
    (dict(obs_dtype=np.uint8), TypeError, "obs_dtype must be a torch.dtype"),
    (dict(num_envs=2.5), TypeError, "num_envs must be an int"),
    (dict(device="cuda"), RuntimeError, "no GPU is visible"),
    (dict(device="meta"), ValueError, "device must be a CPU or CUDA device, got 'meta'"),
    (dict(storage_device="cuda"), RuntimeError, "no GPU is visible"),
])
def test_bad_construction(kwargs, error, message):
    if "cuda" in kwargs.values() and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    args = dict(capacity=16, obs_shape=(4, 8, 8), frame_stack=1) | kwargs
    with pytest.raises(error, match=message):
        dqnfast.ReplayBuffer(args.pop("capacity"), args.pop("obs_shape"), **args)


def test_cuda_devices_are_kept_with_their_index(monkeypatch):
    """"cuda" names the current GPU, so it must equal "cuda:<index>": the buffer copies
    batches (and sample_in_graph refuses) between unequal devices."""
    from dqnfast.replay_inputs import checked_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert checked_device("cuda", "device") == torch.device("cuda:1")
    assert checked_device(torch.device("cuda"), "device") == checked_device("cuda:1", "storage_device")
    assert checked_device("cuda:0", "device") == torch.device("cuda:0")
    assert checked_device("cpu", "device") == torch.device("cpu")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_host_inputs_bound_for_the_gpu_are_checked_like_the_op(dtype):
    """GPU storage checks host inputs on the host before uploading them: byte for byte
    and with the message of the compiled check, which host storage runs."""
    from dqnfast.replay_inputs import check_continues
    obs = torch.arange(3 * 4 * 5).reshape(3, 4, 5).to(dtype)
    next_obs = torch.cat([obs[:, 1:], obs[:, :1] + 1], dim=1)
    check_continues(obs, next_obs, 4)
    if dtype.is_floating_point:  # NaN frames continue themselves, as bytes do
        obs[1, 2, 0] = next_obs[1, 1, 0] = float("nan")
        check_continues(obs, next_obs, 4)
    next_obs[2, 0, 3] += 1
    message = r"next_obs of row 2 does not continue its obs: with frame_stack=4, next_obs\[:-1\] must equal obs\[1:\]"
    with pytest.raises(ValueError, match=message):
        check_continues(obs, next_obs, 4)
    rb = dqnfast.ReplayBuffer(12, (4, 5), num_envs=3, frame_stack=4, obs_dtype=dtype)
    with pytest.raises(ValueError, match=message):
        rb.add(obs, [0, 0, 0], [0.0, 0.0, 0.0], next_obs, [False] * 3, [False] * 3)


def test_copies_to_host_storage_wait_until_they_land(atari_rb):
    """Inputs bound for host storage (and env_ids, checked on the host) are read by the
    host right away: no copy towards the host may return before it lands."""
    from torch.overrides import TorchFunctionMode

    from dqnfast.replay_inputs import to_device

    class RecordCopies(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.to_host = []  # non_blocking of each Tensor.to towards the CPU

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.Tensor.to and any(isinstance(a, torch.device) and a.type == "cpu"
                                               for a in args[1:]):
                self.to_host.append(kwargs.get("non_blocking", False))
            return func(*args, **kwargs)

    rb, streams = atari_rb
    obs, action, reward, next_obs, terminated, truncated = (torch.as_tensor(x) for x in streams.step())
    with RecordCopies() as record:
        rb.add(obs, action, reward, next_obs, terminated, truncated, env_ids=torch.tensor([0, 1]))
        # Host inputs are not copied at all (not even by a no-op .to()); a tensor from
        # elsewhere (here: the meta device) is copied with blocking.
        assert to_device(obs, torch.device("cpu")) is obs
        with pytest.raises(NotImplementedError):  # meta tensors hold no data to copy
            to_device(obs.to("meta"), torch.device("cpu"))
    assert record.to_host == [False]


# -- checkpoints ------------------------------------------------------------------------------

def test_state_dict_shares_storage_and_round_trips(tmp_path, atari_rb):
    rb, streams = atari_rb
    state = rb.state_dict()
    # No copies: the state holds the buffer's own tensors.
    assert all(t.data_ptr() == rb._storage.tensors()[n].data_ptr() for n, t in state["storage"].items())
    rb.save(tmp_path / "rb.pt")
    clone = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=123)
    clone.load(tmp_path / "rb.pt")
    assert len(clone) == len(rb)
    # Same contents and same RNG state: the same batches from here on.
    for _ in range(3):
        a, b = rb.sample(8), clone.sample(8)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    step = streams.step()
    rb.add(*step)
    clone.add(*step)
    assert_unchanged(clone, snapshot(rb))


def test_pickle_and_deepcopy_round_trip(atari_rb):
    rb, streams = atari_rb
    for clone in (pickle.loads(pickle.dumps(rb)), copy.deepcopy(rb)):
        assert len(clone) == len(rb)
        assert_unchanged(clone, snapshot(rb))
        step = streams.step()
        clone.add(*step)  # the clone has its own storage and lock
        assert len(clone) == len(rb) + 2


def test_load_state_dict_rejects_other_configs(atari_rb):
    rb, _ = atari_rb
    other = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=1, frame_stack=4)
    before = snapshot(other)
    # Only the settings that differ are named.
    with pytest.raises(ValueError, match=r"configured otherwise: num_envs=2 \(this buffer: 1\)$"):
        other.load_state_dict(rb.state_dict())
    with pytest.raises(ValueError, match="expected a ReplayBuffer state_dict"):
        other.load_state_dict({"frames": 1})
    state = other.state_dict()
    state = dict(state, storage=dict(state["storage"], reward=torch.zeros(3)))
    with pytest.raises(ValueError, match="state_dict storage 'reward'"):
        other.load_state_dict(state)
    assert_unchanged(other, before)


# -- threads -----------------------------------------------------------------------------------

def test_concurrent_add_and_sample_never_tears():
    """Each transition's frames, action and reward all encode its id: a torn or
    mixed transition would disagree with itself."""
    num_envs, k = 4, 4
    rb = dqnfast.ReplayBuffer(400, (k, 16, 16), num_envs=num_envs, frame_stack=k, seed=0)
    stop = threading.Event()
    errors = []

    def frame(t, e):
        return np.full((16, 16), (t * num_envs + e) % 251, np.uint8)

    def reporting_errors(work):
        """Runs ``work``; any exception it raises fails the test (not a thread's warning)."""
        def run():
            try:
                work()
            except Exception as error:  # noqa: BLE001 (the test reports it)
                errors.append(error)
            finally:
                stop.set()
        return run

    def actor():
        t = 0
        stacks = np.stack([[frame(j, e) for j in range(k)] for e in range(num_envs)])
        while not stop.is_set() and t < 20_000:
            new = np.stack([frame(t + k, e) for e in range(num_envs)])[:, None]
            nxt = np.concatenate([stacks[:, 1:], new], axis=1)
            ids = np.arange(num_envs) + t * num_envs
            rb.add(stacks, ids % 7, ids.astype(np.float32), nxt, np.zeros(num_envs, bool),
                   np.zeros(num_envs, bool))
            stacks, t = nxt, t + 1

    def learner():
        while len(rb) < 64:
            time.sleep(0.001)
        for _ in range(300):
            batch = rb.sample(64)
            for i, reward in enumerate(batch.reward.tolist()):
                t, e = divmod(int(reward), num_envs)
                want = np.stack([frame(t + j, e) for j in range(k + 1)])
                assert batch.action[i].item() == int(reward) % 7
                np.testing.assert_array_equal(batch.obs[i].numpy(), want[:k])
                np.testing.assert_array_equal(batch.next_obs[i].numpy(), want[1:])

    threads = [threading.Thread(target=reporting_errors(work)) for work in (actor, learner)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[0]
    assert len(rb) == 400  # the actor kept adding while the learner sampled


# -- the ops themselves ------------------------------------------------------------------------

@pytest.mark.parametrize("prioritized", [False, True])
def test_sample_op_compiles(atari_rb, prioritized):
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, seed=0, n_step=2,
                              prioritized=prioritized)
    streams = EpisodeStreams(np.random.default_rng(0), 2, 4, (6, 6), np.uint8, end_prob=0.2)
    for _ in range(10):
        rb.add(*streams.step())
    storage = rb._storage
    out = {n: torch.empty_like(t) for n, t in rb.sample(6)._asdict().items()}
    beta = torch.tensor([0.5], dtype=torch.float64)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def sample(bits):
        dqnfast.ops.replay_sample(storage, bits, 4, 2, 0.9, beta, out)
        return out["obs"].float().mean() + out["reward"].sum() + out["weight"].sum()

    bits = torch.randint(0, 2**62, (6,))
    compiled = sample(bits)
    dqnfast.ops.replay_sample(storage, bits, 4, 2, 0.9, beta, out)
    assert compiled.item() == (out["obs"].float().mean() + out["reward"].sum()
                               + out["weight"].sum()).item()


def test_readme_loop_with_gymnasium_vector_env():
    """The README's loop: next-step autoreset steps stay out of the buffer."""
    gymnasium = pytest.importorskip("gymnasium")
    envs = gymnasium.make_vec("CartPole-v1", num_envs=4)
    rb = dqnfast.ReplayBuffer(2_000, (4,), num_envs=4, obs_dtype=torch.float32, seed=0)
    ref = NaiveReplayBuffer.like(rb)
    obs, _ = envs.reset(seed=0)
    resetting = np.zeros(4, dtype=bool)
    rng = np.random.default_rng(0)
    ends = 0
    for step in range(1_000):
        actions = rng.integers(0, 2, 4)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        live = np.flatnonzero(~resetting)
        # Unique ids in place of CartPole's constant reward of 1 identify transitions.
        ids = (step * 4 + live + 1).astype(np.float32)
        assert (rewards[live] == 1).all() and (rewards[resetting] == 0).all()
        rb.add(obs[live], actions[live], ids, next_obs[live], terminated[live], truncated[live],
               env_ids=live)
        ref.add(obs[live], actions[live], ids, next_obs[live], terminated[live], live,
                truncated=truncated[live])
        ends += int((terminated | truncated).sum())
        resetting = terminated | truncated
        obs = next_obs
    assert ends > 50
    check_against_reference(rb, ref, draws=3)


# -- on a GPU: the CUDA kernels against their CPU twins, bit for bit ----------

@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
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


@pytest.mark.cuda
def test_add_frames_needs_host_storage():
    rb = dqnfast.ReplayBuffer(64, (4, 6, 6), num_envs=2, frame_stack=4, storage_device="cuda")
    streams = EpisodeStreams(np.random.default_rng(1), 2, 4, (6, 6), np.uint8, end_prob=0.3)
    chunk, _ = chunk_of(streams)
    with pytest.raises(ValueError, match="add_frames needs host storage, this buffer is stored "
                                         "on cuda:0"):
        rb.add_frames(**chunk)
    assert len(rb) == 0
