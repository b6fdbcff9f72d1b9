"""Prioritized replay and n-step settings of dqnfast.ReplayBuffer: sampling
frequencies, importance weights, stratification, priority updates and bad input."""
import math

import numpy as np
import pytest
import torch

import dqnfast
from reference import EpisodeStreams, NaiveReplayBuffer, check_against_reference, decode_index
from test_replay_buffer import assert_unchanged, snapshot


def filled(num_envs=3, per_env=40, steps=90, n_step=3, end_prob=0.1, seed=0, **kwargs):
    """A prioritized buffer that has wrapped, with its reference."""
    rb = dqnfast.ReplayBuffer(num_envs * per_env, (4, 3, 3), num_envs=num_envs, frame_stack=4,
                              seed=seed, n_step=n_step, prioritized=True, **kwargs)
    ref = NaiveReplayBuffer.like(rb)
    streams = EpisodeStreams(np.random.default_rng(seed), num_envs, 4, (3, 3), np.uint8,
                             end_prob=end_prob, silent_reset_prob=0.02)
    for _ in range(steps):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        rb.add(obs, action, reward, next_obs, terminated, truncated)
        ref.add(obs, action, reward, next_obs, terminated, truncated=truncated)
    return rb, ref, streams


def index_of(rb, key):
    env, number = key
    return number * rb.num_envs + env


def set_random_priorities(rb, ref, rng):
    """Gives every sampleable transition a random priority: {key: p_i}."""
    keys = sorted(ref.sampleable())
    raw = rng.uniform(0.0, 5.0, len(keys)).astype(np.float32)
    rb.update_priorities(np.array([index_of(rb, key) for key in keys]), raw)
    return {key: (float(r) + rb.priority_eps) ** rb.alpha for key, r in zip(keys, raw)}


def chi_square_bound(dof):
    # Chi-square with dof degrees of freedom: mean dof, sd sqrt(2 dof); 6 sd is far
    # beyond any chance failure.
    return dof + 6 * math.sqrt(2 * dof)


def test_sampling_frequencies_follow_priorities_and_weights_match_the_formula():
    rb, ref, _ = filled()
    priorities = set_random_priorities(rb, ref, np.random.default_rng(1))
    total, smallest = sum(priorities.values()), min(priorities.values())
    n = len(priorities)
    assert n == len(rb)
    rb.beta = 0.7
    hits = dict.fromkeys(priorities, 0)
    draws = 0
    for _ in range(400):
        batch = rb.sample(64)
        for index, weight in zip(batch.index.tolist(), batch.weight.tolist()):
            key = decode_index(rb, index)
            hits[key] += 1
            # (N P(i))^-beta / max_j (N P(j))^-beta
            expected = (n * priorities[key] / total) ** -0.7 / (n * smallest / total) ** -0.7
            assert weight == pytest.approx(expected, rel=1e-5)
        draws += 64
    observed = np.array([hits[key] for key in priorities], np.float64)
    expected = np.array([draws * p / total for p in priorities.values()])
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < chi_square_bound(n - 1), chi2


def test_each_draw_lies_in_its_slice_of_the_total_priority():
    rb, ref, _ = filled()
    priorities = set_random_priorities(rb, ref, np.random.default_rng(2))
    # Leaves in tree order: env-major, then slot.
    order = sorted(priorities, key=lambda key: (key[0], key[1] % (rb.capacity // rb.num_envs)))
    bounds, mass = {}, 0.0
    for key in order:
        bounds[key] = (mass, mass + priorities[key])
        mass += priorities[key]
    for batch_size in (1, 7, 32):
        for _ in range(20):
            batch = rb.sample(batch_size)
            for b, index in enumerate(batch.index.tolist()):
                low, high = bounds[decode_index(rb, index)]
                slice_low, slice_high = b * mass / batch_size, (b + 1) * mass / batch_size
                assert low <= slice_high * (1 + 1e-9) and high >= slice_low * (1 - 1e-9)


def test_new_transitions_get_the_largest_priority_or_their_own():
    rb, ref, streams = filled(num_envs=2)
    keys = sorted(ref.sampleable())
    rb.update_priorities(np.array([index_of(rb, keys[0])]), np.array([3.0], np.float32))
    largest = (3.0 + rb.priority_eps) ** rb.alpha
    assert rb.state_dict()["storage"]["max_priority"].item() == pytest.approx(largest, rel=1e-6)
    for _ in range(4):  # n_step = 3: the windows of the first new transitions complete
        rb.add(*streams.step())
    priority = rb.state_dict()["storage"]["priority"]
    written = rb.state_dict()["storage"]["counters"][:, 0].clone()
    per_env = rb.capacity // rb.num_envs
    for env in range(2):
        assert priority[env, (written[env] - 1) % per_env].item() == pytest.approx(largest, rel=1e-6)
    rb.add(*streams.step(), priority=np.array([0.5, 100.0], np.float32))
    for env, raw in enumerate((0.5, 100.0)):
        got = priority[env, written[env] % per_env].item()
        assert got == pytest.approx((raw + rb.priority_eps) ** rb.alpha, rel=1e-6)
    assert rb.state_dict()["storage"]["max_priority"].item() == pytest.approx(
        (100.0 + rb.priority_eps) ** rb.alpha, rel=1e-6)


def tree_is_consistent(rb):
    """Every leaf holds its sampleable transition's priority (else 0 / inf), every
    parent its children's sum and min."""
    storage = rb.state_dict()["storage"]
    sums, mins = storage["sum_tree"].cpu(), storage["min_tree"].cpu()
    priority = storage["priority"].cpu().flatten()
    leaves = len(sums) // 2
    sampleable = np.zeros(leaves, bool)
    per_env = rb.capacity // rb.num_envs
    counters = storage["counters"].cpu().numpy()
    for env, (written, _, first_valid, stream_open, stream_start) in enumerate(counters):
        end = written - (stream_open * min(rb.n_step - 1, written - stream_start))
        for n in range(first_valid, end):
            sampleable[env * per_env + n % per_env] = True
    for leaf in range(leaves):
        want = float(priority[leaf]) if sampleable[leaf] else 0.0
        assert sums[leaves + leaf].item() == want
        assert mins[leaves + leaf].item() == (want if sampleable[leaf] else math.inf)
    for node in range(1, leaves):
        assert sums[node].item() == sums[2 * node].item() + sums[2 * node + 1].item()
        assert mins[node].item() == min(mins[2 * node].item(), mins[2 * node + 1].item())


def test_trees_follow_adds_evictions_and_updates():
    rng = np.random.default_rng(3)
    rb, ref, streams = filled(num_envs=3, per_env=7, steps=5, end_prob=0.3, frame_capacity=3 * 14)
    for step in range(60):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        ids = rng.permutation(3)[:rng.integers(1, 4)]
        rb.add(obs[ids], action[ids], reward[ids], next_obs[ids], terminated[ids], truncated[ids],
               env_ids=ids)
        ref.add(obs[ids], action[ids], reward[ids], next_obs[ids], terminated[ids], ids,
                truncated=truncated[ids])
        if len(rb) and step % 3 == 0:
            batch = rb.sample(len(rb))
            rb.update_priorities(batch.index, torch.from_numpy(rng.uniform(0, 2, len(rb))).float())
        tree_is_consistent(rb)
    check_against_reference(rb, ref, draws=10)


def test_stale_updates_are_ignored_and_duplicates_take_the_largest():
    rb, _, streams = filled(num_envs=1, per_env=10, steps=12, end_prob=0.0)
    batch = rb.sample(4)
    stale = batch.index.clone()
    for _ in range(20):  # every sampled transition is overwritten
        rb.add(*streams.step())
    before = snapshot(rb)
    rb.update_priorities(stale, torch.ones(4))
    assert_unchanged(rb, before)

    index = rb.sample(1).index[0].item()
    rb.update_priorities(torch.tensor([index, index, index]), torch.tensor([1.0, 7.0, 2.0]))
    env, number = decode_index(rb, index)
    got = rb.state_dict()["storage"]["priority"][env, number % 10].item()
    assert got == pytest.approx((7.0 + rb.priority_eps) ** rb.alpha, rel=1e-6)


def test_update_priorities_takes_any_device_and_dtype_of_floats():
    rb, ref, _ = filled(num_envs=1, per_env=10, steps=12)
    keys = sorted(ref.sampleable())[:3]  # three distinct transitions
    index = np.array([index_of(rb, key) for key in keys])

    def stored():
        priority = rb.state_dict()["storage"]["priority"]
        return [priority[env, number % 10].item() for env, number in keys]

    rb.update_priorities(index, np.array([1.0, 2.0, 3.0]))  # float64 numpy
    assert stored() == pytest.approx([(p + rb.priority_eps) ** rb.alpha for p in (1, 2, 3)])
    rb.update_priorities(torch.from_numpy(index).int(),
                         torch.tensor([4.0, 5.0, 6.0], dtype=torch.float16))
    assert stored() == pytest.approx([(p + rb.priority_eps) ** rb.alpha for p in (4, 5, 6)])


BAD_UPDATES = [
    (lambda i: (i, torch.ones(3)), ValueError, r"same shape \(batch,\), got \(4,\) and \(3,\)"),
    (lambda i: (i[:, None], torch.ones(4, 1)), ValueError, r"same shape \(batch,\)"),
    (lambda i: (i, torch.ones(4, dtype=torch.int64)), TypeError, "expected priority of a floating dtype"),
    (lambda i: (i.float(), torch.ones(4)), TypeError, "expected index of an integer dtype"),
    (lambda i: (i, torch.tensor([1.0, -1.0, 1.0, 1.0])), ValueError, "finite and non-negative, got -1"),
    (lambda i: (i, torch.tensor([1.0, 1.0, float("nan"), 1.0])), ValueError, "finite and non-negative, got nan"),
    (lambda i: (i, torch.tensor([1.0, 1.0, 1.0, float("inf")])), ValueError, "finite and non-negative, got inf"),
    (lambda i: (torch.tensor([0, -3, 1, 2]), torch.ones(4)), ValueError, "index must be non-negative"),
    (lambda i: (torch.tensor([0, 10**9, 1, 2]), torch.ones(4)), ValueError, "which was never written"),
    (lambda i: ("index", torch.ones(4)), TypeError, "expected index as a numpy array or torch tensor"),
]


@pytest.mark.parametrize("make,error,message", BAD_UPDATES)
def test_bad_update_is_rejected_and_changes_nothing(make, error, message):
    rb, _, _ = filled()
    index, priority = make(rb.sample(4).index.clone())
    before = snapshot(rb)
    with pytest.raises(error, match=message):
        rb.update_priorities(index, priority)
    assert_unchanged(rb, before)


def test_bad_add_priority_is_rejected_and_changes_nothing():
    rb, _, streams = filled()
    step = streams.step()
    before = snapshot(rb)
    for priority, error, message in [
            (np.array([1.0, -2.0, 1.0], np.float32), ValueError, "finite and non-negative, got -2"),
            (np.array([1.0, np.nan, 1.0], np.float32), ValueError, "finite and non-negative, got nan"),
            (np.array([1.0, 1.0], np.float32), ValueError, r"expected priority of shape \[3\]"),
            (np.array([1, 1, 1]), TypeError, "expected priority of a floating dtype")]:
        with pytest.raises(error, match=message):
            rb.add(*step, priority=priority)
        assert_unchanged(rb, before)


def test_priorities_need_a_prioritized_buffer():
    rb = dqnfast.ReplayBuffer(8, (3,), obs_dtype=torch.float32)
    obs = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="needs a prioritized buffer"):
        rb.add(obs, [0], [1.0], obs, [False], [False], priority=[1.0])
    rb.add(obs, [0], [1.0], obs, [False], [False])
    with pytest.raises(ValueError, match="needs a prioritized buffer"):
        rb.update_priorities(rb.sample(1).index, torch.ones(1))


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(n_step=0), ValueError, "n_step must be at least 1, got 0"),
    (dict(n_step=2.0), TypeError, "n_step must be an int"),
    (dict(n_step=5, capacity=8, num_envs=2), ValueError, "capacity // num_envs must be at least n_step=5"),
    (dict(n_step=3, frame_stack=4, frame_capacity=6), ValueError, "frame_capacity must be at least 7"),
    (dict(gamma=1.5), ValueError, r"gamma must be in \[0, 1\], got 1.5"),
    (dict(gamma=-0.1), ValueError, r"gamma must be in \[0, 1\]"),
    (dict(gamma="0.9"), TypeError, "gamma must be a float"),
    (dict(alpha=1.2), ValueError, r"alpha must be in \[0, 1\], got 1.2"),
    (dict(alpha=float("nan")), ValueError, r"alpha must be in \[0, 1\]"),
    (dict(beta=-0.5), ValueError, r"beta must be in \[0, 1\], got -0.5"),
    (dict(priority_eps=0.0), ValueError, "priority_eps must be positive and finite"),
    (dict(priority_eps=-1e-6), ValueError, "priority_eps must be positive and finite"),
    (dict(priority_eps=math.inf), ValueError, "priority_eps must be positive and finite"),
    (dict(prioritized=1), TypeError, "prioritized must be a bool"),
])
def test_bad_settings(kwargs, error, message):
    args = dict(capacity=16, obs_shape=(4, 5, 5), frame_stack=4) | kwargs
    with pytest.raises(error, match=message):
        dqnfast.ReplayBuffer(args.pop("capacity"), args.pop("obs_shape"), **args)


def test_beta_is_checked_when_changed():
    rb, _, _ = filled()
    rb.beta = 1.0
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\], got 2"):
        rb.beta = 2
    assert rb.beta == 1.0


def test_state_dict_round_trips_trees_and_largest_priority(tmp_path):
    rb, ref, streams = filled()
    set_random_priorities(rb, ref, np.random.default_rng(4))
    rb.save(tmp_path / "rb.pt")
    clone = dqnfast.ReplayBuffer(rb.capacity, rb.obs_shape, num_envs=rb.num_envs, frame_stack=4,
                                 n_step=3, prioritized=True, seed=1)
    clone.load(tmp_path / "rb.pt")
    assert_unchanged(clone, snapshot(rb))
    for _ in range(3):
        for x, y in zip(rb.sample(16), clone.sample(16)):
            assert torch.equal(x, y)
    step = streams.step()
    rb.add(*step)
    clone.add(*step)
    assert_unchanged(clone, snapshot(rb))
    other = dqnfast.ReplayBuffer(rb.capacity, rb.obs_shape, num_envs=rb.num_envs, frame_stack=4,
                                 n_step=2, prioritized=True)
    with pytest.raises(ValueError, match=r"configured otherwise: n_step=3 \(this buffer: 2\)$"):
        other.load_state_dict(rb.state_dict())


def test_n_step_1_gives_the_one_step_batches():
    """n_step=1: the same draws as a buffer without n-step returns would give, the
    reward one step's, discount gamma (0 where terminated) and weights one."""
    rb = dqnfast.ReplayBuffer(60, (4, 3, 3), num_envs=2, frame_stack=4, seed=5, gamma=0.9)
    ref = NaiveReplayBuffer.like(rb)
    streams = EpisodeStreams(np.random.default_rng(5), 2, 4, (3, 3), np.uint8, end_prob=0.2)
    for _ in range(50):
        obs, action, reward, next_obs, terminated, truncated = streams.step()
        rb.add(obs, action, reward, next_obs, terminated, truncated)
        ref.add(obs, action, reward, next_obs, terminated, truncated=truncated)
    batch = rb.sample(40)
    expected = ref.sampleable()
    for i, index in enumerate(batch.index.tolist()):
        row = expected[decode_index(rb, index)]
        assert batch.reward[i].item() == np.float32(row["reward"])
        assert batch.discount[i].item() == (0.0 if row["terminated"] else np.float32(0.9))
    assert (batch.weight == 1).all()


# -- on a GPU: the CUDA kernels against their CPU twins, bit for bit ----------

@pytest.mark.cuda
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
