"""Distributed acting (dqnfast.distributed) in one run: what one learner can ingest,
what each transition costs on the wire, and the fleet's env steps/s on Pong.

    python -m pytest benchmarks/bench_distributed.py --benchmark-only

Groups:

  ingest     The learner's side of one Atari chunk (50 vector steps of 8 envs: 400
             transitions of 84x84 frames, 4 stacked, episodes of about 250 steps),
             from Ray's object store into a prioritized 3-step buffer of 100k: ``ray.get``
             of the chunk, then the buffer's adds. "frames once" is dqnfast's chunk
             (``add_chunk``: views into the delivered arrays); "stacks" ships every
             transition's obs and next_obs stacks (what a design without frame sharing
             sends) and adds them a vector step at a time. ``extra_info``:
             ``transitions_per_second`` and ``bytes_per_transition`` on the wire.
  fleet-pong Env steps/s of whole Pong runs with the ``pong`` preset: the
             single-process loop, and the learner with 1 and 2 actors (each with the
             preset's 16 envs), over ``FLEET_STEPS`` env steps with updates from step
             ``FLEET_LEARNING_STARTS``. ``extra_info``: ``steps_per_second``.
"""
import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="the distributed extra installs ray")
from dqnfast import ReplayBuffer  # noqa: E402
from dqnfast.presets import resolve  # noqa: E402
from dqnfast.distributed.chunks import ChunkBuilder, add_chunk  # noqa: E402
from dqnfast.train import train  # noqa: E402

NUM_ENVS, CHUNK_STEPS, FRAME = 8, 50, (84, 84)
FLEET_STEPS, FLEET_LEARNING_STARTS = 12_000, 2_000


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def synthetic_chunk(rng, builder_state):
    """One chunk of a synthetic Atari stream: frames shift like stacks do, episodes of
    about 250 steps end terminated (a reset step follows, as envpool's)."""
    builder, stacks, resetting = builder_state
    for _ in range(CHUNK_STEPS):
        new = rng.integers(0, 256, (NUM_ENVS, 1, *FRAME), dtype=np.uint8)
        next_obs = np.concatenate([stacks[:, 1:], new], axis=1)
        next_obs[resetting] = rng.integers(0, 256, (int(resetting.sum()), 4, *FRAME), np.uint8)
        terminated = ~resetting & (rng.random(NUM_ENVS) < 1 / 250)
        builder.step(rng.integers(0, 6, NUM_ENVS), rng.random(NUM_ENVS).astype(np.float32),
                     terminated, np.zeros(NUM_ENVS, bool), next_obs, resetting)
        stacks, resetting = next_obs, terminated
    builder_state[1:] = [stacks, resetting]
    return builder.finish()


def stack_chunk(chunk):
    """The same transitions as whole (obs, next_obs) stacks, by vector step."""
    index = chunk.obs_pos[:, None] + np.arange(4)[None, :]
    return dict(obs=chunk.frames[index], next_obs=chunk.frames[index + 1], env=chunk.env,
                action=chunk.action, reward=chunk.reward, terminated=chunk.terminated,
                truncated=chunk.truncated, priority=chunk.priority)


def add_stacks(replay, sent):
    # A vector step's rows are consecutive in env order; a new step starts where env drops.
    starts = np.flatnonzero(np.diff(sent["env"], prepend=NUM_ENVS) <= 0)
    for begin, end in zip(starts, list(starts[1:]) + [len(sent["env"])]):
        rows = slice(begin, end)
        replay.add(sent["obs"][rows], sent["action"][rows], sent["reward"][rows],
                   sent["next_obs"][rows], sent["terminated"][rows], sent["truncated"][rows],
                   env_ids=sent["env"][rows], priority=sent["priority"][rows])


@pytest.mark.parametrize("design", ["frames once", "stacks"])
def test_ingest(benchmark, local_ray, design):
    benchmark.group = "ingest"
    rng = np.random.default_rng(0)
    builder = ChunkBuilder(NUM_ENVS, 4, n_step=3)  # as the actors of a 3-step buffer
    first = rng.integers(0, 256, (NUM_ENVS, 4, *FRAME), dtype=np.uint8)
    builder.start(first)
    state = [builder, first, np.zeros(NUM_ENVS, bool)]
    replay = ReplayBuffer(100_000, (4, *FRAME), num_envs=NUM_ENVS, frame_stack=4,
                          n_step=3, prioritized=True, alpha=0.6, seed=0)
    refs, sizes = [], []
    for _ in range(20):  # the chunks, in the object store before timing
        chunk = synthetic_chunk(rng, state)
        chunk.priority = rng.random(len(chunk)).astype(np.float32)
        sent = chunk if design == "frames once" else stack_chunk(chunk)
        sizes.append((chunk.nbytes if design == "frames once"
                      else sum(a.nbytes for a in sent.values())) / len(chunk))
        refs.append((ray.put(sent), len(chunk)))
    position = iter(range(10**9))

    def ingest():
        ref, count = refs[next(position) % len(refs)]
        sent = ray.get(ref)
        if design == "frames once":
            add_chunk(replay, sent, 0)
        else:
            add_stacks(replay, sent)
        return count

    count = benchmark.pedantic(ingest, rounds=40, warmup_rounds=2)
    benchmark.extra_info["bytes_per_transition"] = float(np.mean(sizes))
    if benchmark.stats:  # (none with --benchmark-disable)
        benchmark.extra_info["transitions_per_second"] = count / benchmark.stats.stats.median


@pytest.mark.parametrize("actors", [None, 1, 2])
def test_fleet_pong(benchmark, local_ray, tmp_path, actors):
    benchmark.group = "fleet-pong"
    pytest.importorskip("envpool")
    torch.set_num_threads(1)
    cfg = resolve("pong", actors=actors, total_steps=FLEET_STEPS,
                  learning_starts=FLEET_LEARNING_STARTS, progress=False,
                  run_dir=str(tmp_path / "run"), checkpoint_interval=10**9)
    result = benchmark.pedantic(lambda: train(cfg), rounds=1, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["steps_per_second"] = result.steps / benchmark.stats.stats.median
