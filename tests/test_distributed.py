"""Distributed acting on Ray (dqnfast.distributed): chunks against direct adds, the
actors through a local Ray, their deaths, and a killed learner resumed."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

import dqnfast
from dqnfast import envs
from dqnfast.distributed.actor import Actor, actor_seed, apex_epsilon, weights_of
from dqnfast.distributed.chunks import ChunkBuilder, add_chunk, n_step_targets, stacks
from dqnfast.distributed.learner_loop import check_reachable, train_distributed, updates_owed
from dqnfast.checkpoint import load_model
from dqnfast.evaluate import evaluate
from dqnfast.learner import EnvSpec, Learner
from dqnfast.presets import PRESETS, parse_args, resolve
from dqnfast.train import train

REPO = Path(__file__).resolve().parent.parent


def buffers_equal(a, b):
    """Same config, same stored bytes (frames, metadata, priorities, trees)."""
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a["config"] == state_b["config"]
    for name, tensor in state_a["storage"].items():
        assert torch.equal(tensor, state_b["storage"][name]), name


def make_buffer(env, num_envs, **options):
    return dqnfast.ReplayBuffer(3_000, env.obs_shape, num_envs=num_envs,
                                frame_stack=env.frame_stack, obs_dtype=env.obs_dtype, seed=5,
                                n_step=3, gamma=0.9, **options)


def add_like_train(replay, obs, actions, stepped, priority=None, env_base=0):
    """The single-process loop's add of one vector step."""
    next_obs, reward, terminated, truncated, info = stepped
    live = np.flatnonzero(~info["reset_step"])
    if len(live):
        replay.add(obs[live], actions[live], reward[live], next_obs[live], terminated[live],
                   truncated[live], env_ids=live + env_base,
                   priority=None if priority is None else priority[live])


def play_in_chunks(env, steps, chunk_steps, n_step, priority_of):
    """Random play of ``env`` through a ChunkBuilder: the chunks, and per env the
    transitions it played in order, (obs, action, reward, next_obs, terminated,
    truncated) each."""
    rng = np.random.default_rng(0)
    builder = ChunkBuilder(env.num_envs, env.frame_stack, n_step)
    obs = env.reset()
    builder.start(obs)
    played = [[] for _ in range(env.num_envs)]
    chunks = []
    for t in range(steps):
        actions = rng.integers(0, env.num_actions, env.num_envs)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        builder.step(actions, reward, terminated, truncated, next_obs, info["reset_step"])
        for e in np.flatnonzero(~info["reset_step"]):
            played[e].append((obs[e], actions[e], reward[e], next_obs[e], terminated[e],
                              truncated[e]))
        obs = next_obs
        if (t + 1) % chunk_steps == 0:
            chunk = builder.finish(priority_of)
            chunk.frames.setflags(write=False)  # as Ray delivers them
            chunks.append(chunk)
    return chunks, played


STREAMS = [("CartPole-v1", dict(max_episode_steps=15)),  # terminations and truncations
           ("Pong-v5", dict(max_episode_frames=240))]  # frame stacks, truncated games


@pytest.mark.parametrize("env_id, options", STREAMS)
def test_chunks_fill_the_buffer_as_direct_adds(env_id, options):
    """Chunks of a random stream, added through add_chunk, leave the buffer exactly as
    direct adds of the same transitions: frames, actions, rewards, flags, the n-step
    windows and the priorities. Each chunk holds back at most n_step - 1 transitions
    per env, and sends them with the next one."""
    num_envs, n_step = 3, 3
    env = envs.make(env_id, num_envs=num_envs, seed=4, **options)
    by_chunks = make_buffer(env, 2 * num_envs, prioritized=True)
    direct = make_buffer(env, 2 * num_envs, prioritized=True)
    priority_rng = np.random.default_rng(1)
    chunks, played = play_in_chunks(
        env, 91, 7, n_step, lambda everything: priority_rng.random(len(everything)) * 5)
    env.close()
    next_of_env = [0] * num_envs
    for chunk in chunks:
        add_chunk(by_chunks, chunk, env_base=num_envs)
        for e, priority in zip(chunk.env, chunk.priority):
            obs, action, reward, next_obs, terminated, truncated = played[e][next_of_env[e]]
            direct.add(obs[None], [action], [reward], next_obs[None], [terminated],
                       [truncated], env_ids=[num_envs + e], priority=[priority])
            next_of_env[e] += 1
    for e in range(num_envs):  # all sent but the last n_step - 1 of an open stream
        waiting = played[e][next_of_env[e]:]
        assert len(waiting) <= n_step - 1
        assert not any(terminated or truncated for *_, terminated, truncated in waiting)
    assert len(direct) > 100
    buffers_equal(by_chunks, direct)
    a, b = by_chunks.sample(64), direct.sample(64)
    for field in a._fields:
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("env_id, options", STREAMS)
def test_actor_targets_are_the_buffers_n_step_returns(env_id, options):
    """The n-step target the actor computes for each transition it sends (its first
    priority) is the return the learner's buffer computes for it: reward + discount *
    next_value of the buffer's n-step window, over several envs and chunks, with
    terminated and truncated episodes."""
    num_envs, n_step, gamma = 3, 3, 0.9
    env = envs.make(env_id, num_envs=num_envs, seed=4, **options)

    def next_value(next_obs):  # any function of next_obs stands in for max_a Q
        return next_obs.reshape(len(next_obs), -1).astype(np.float64).mean(axis=1) ** 2

    def targets_of(everything):
        _, next_obs = stacks(everything, env.frame_stack)
        return n_step_targets(everything, next_value(next_obs), gamma, n_step) + 100.0

    chunks, _ = play_in_chunks(env, 91, 7, n_step, targets_of)
    env.close()
    replay = dqnfast.ReplayBuffer(3_000, env.obs_shape, num_envs=num_envs,
                                  frame_stack=env.frame_stack, obs_dtype=env.obs_dtype, seed=5,
                                  n_step=n_step, gamma=gamma)
    sent_targets = [[] for _ in range(num_envs)]
    for chunk in chunks:
        add_chunk(replay, chunk.__class__(**{**vars(chunk), "priority": np.zeros(0, np.float32)}),
                  env_base=0)
        for e, target in zip(chunk.env, chunk.priority):
            sent_targets[e].append(float(target) - 100.0)
    assert len(replay) > 100
    seen = set()
    for _ in range(20):
        batch = replay.sample(len(replay))
        returns = (batch.reward.double() + batch.discount.double()
                   * torch.from_numpy(next_value(batch.next_obs.numpy()))).numpy()
        for index, buffer_return in zip(batch.index.tolist(), returns):
            e, number = index % num_envs, index // num_envs
            assert buffer_return == pytest.approx(sent_targets[e][number], rel=1e-5, abs=1e-5)
            seen.add(index)
    assert len(seen) == len(replay)  # every sampleable transition compared
    assert any(c.truncated.any() for c in chunks)  # windows that end early
    assert any(c.terminated.any() for c in chunks) == (env_id == "CartPole-v1")


def test_chunk_frames_are_each_frame_once():
    env = envs.make("Pong-v5", num_envs=2, seed=1)
    builder = ChunkBuilder(2, env.frame_stack, n_step=3)
    builder.start(env.reset())
    sizes = []
    for _ in range(2):
        for _ in range(20):
            stepped = env.step(np.zeros(2, np.int64))
            builder.step(np.zeros(2, np.int64), *stepped[1:4], stepped[0],
                         stepped[4]["reset_step"])
        chunk = builder.finish()
        sizes.append((len(chunk), len(chunk.frames)))
        assert chunk.nbytes / len(chunk) < 1.25 * 84 * 84
    env.close()
    # One new frame per transition plus each env's first stack of 4; the last 2 of each
    # env wait for the next chunk.
    assert sizes == [(36, 36 + 8), (40, 40 + 8)]


def test_n_step_targets_match_a_plain_loop():
    """Windows end at a terminated or truncated transition, at a restart (a reset step
    without either), and at the chunk's end."""
    rng = np.random.default_rng(2)
    builder = ChunkBuilder(2, 1)
    builder.start(np.zeros((2, 3), np.float32))
    stream_of_row, streams = [], np.zeros(2, int)
    for _ in range(40):
        done = rng.random(2) < 0.15
        terminated = done & (rng.random(2) < 0.5)
        reset_step = rng.random(2) < 0.1
        builder.step(rng.integers(0, 2, 2), rng.normal(size=2).astype(np.float32), terminated,
                     done & ~terminated, rng.normal(size=(2, 3)).astype(np.float32), reset_step)
        streams += reset_step
        stream_of_row += [streams[e] for e in range(2) if not reset_step[e]]
    chunk = builder.finish()
    next_values = rng.normal(size=len(chunk))
    gamma, n = 0.9, 3
    targets = n_step_targets(chunk, next_values, gamma, n)
    for i in range(len(chunk)):
        rows = [j for j in range(i, len(chunk)) if chunk.env[j] == chunk.env[i]
                and stream_of_row[j] == stream_of_row[i]]
        total, discount, last = 0.0, 1.0, i
        for j in rows[:n]:
            total += discount * float(chunk.reward[j])
            discount *= gamma
            last = j
            if chunk.terminated[j] or chunk.truncated[j]:
                break
        expected = total + (0.0 if chunk.terminated[last] else discount * next_values[last])
        assert targets[i] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_best_model_is_the_weights_the_judged_actor_played_with(tmp_path):
    """With a judged actor, best_model.pt holds the weights that played the episode
    which made the best mean, not the learner's own; the other actors' episodes move
    neither the mean nor the model, and the weights are fetched only for a new best."""
    spec = EnvSpec(obs_shape=(4,), obs_dtype=torch.float32, num_actions=2, frame_stack=1)
    learner = Learner(resolve("cartpole", progress=False), spec, tmp_path / "run",
                      buffer_envs=2, acts_here=False, judged_actor=1)
    fetched = []

    def weights(version):
        def fetch():
            fetched.append(version)
            return {name: torch.full_like(value, version)
                    for name, value in learner.q_network.state_dict().items()}
        return fetch

    def best_model():
        network, _ = load_model(tmp_path / "run")
        values = torch.cat([value.flatten() for value in network.state_dict().values()])
        return values.unique().tolist(), torch.load(tmp_path / "run" / "best_model.pt",
                                                    weights_only=False)["mean_return"]

    for _ in range(10):  # the 10th makes the first best mean
        learner.episode(10.0, 10, actor=1, played_with=weights(1))
    assert best_model() == ([1.0], 10.0) and fetched == [1]
    learner.episode(500.0, 500, actor=0, played_with=weights(9))
    assert learner.mean_return == 10.0 and best_model() == ([1.0], 10.0) and fetched == [1]
    learner.episode(120.0, 120, actor=1, played_with=weights(2))
    assert best_model() == ([2.0], 20.0) and fetched == [1, 2]
    learner.episode(0.0, 9, actor=1, played_with=weights(3))  # the mean falls: no new best
    learner.close()
    assert best_model() == ([2.0], 20.0) and fetched == [1, 2]


def test_apex_epsilon_ladder():
    assert apex_epsilon(0, 1) == 0.4
    assert [apex_epsilon(i, 3) for i in range(3)] == pytest.approx([0.4, 0.4 ** 4.5, 0.4 ** 8])


def test_updates_owed_follow_the_presets_ratio():
    cfg = resolve("cartpole")  # 8 envs, an update per vector step: one per 8 env steps
    assert updates_owed(cfg, cfg.learning_starts) == 0
    assert updates_owed(cfg, cfg.learning_starts + 800) == 100


def test_bad_settings_are_refused_before_anything_starts(tmp_path):
    run_dir = tmp_path / "run"
    for overrides, error, match in (
            (dict(actors=0), ValueError, "actors must be an int of at least 1, got 0"),
            (dict(actors=2, ratio_policy="fast"), ValueError, "ratio_policy must be one of"),
            (dict(actors=2, ray_address="127.0.0.1:1"), ConnectionError,
             "cannot reach the Ray cluster at '127.0.0.1:1'"),
            (dict(actors=2, ray_address="nowhere"), ValueError, "ray_address must be HOST:PORT"),
            (dict(actors=2, chunk_steps=100), ValueError,
             "a chunk of num_envs \\* chunk_steps = 800 env steps spans more than "
             "target_update_interval=500"),
            # Ray on this machine: no more actors than its CPUs, unless they share them.
            (dict(actors=os.cpu_count() + 1), ValueError,
             f"{os.cpu_count() + 1} actors of 1 CPU need {os.cpu_count() + 1} CPUs; this machine "
             f"has {os.cpu_count()}: lower --actors, or --actor-cpus to share CPUs among actors")):
        with pytest.raises(error, match=match):
            train(resolve("cartpole", run_dir=str(run_dir), progress=False, **overrides))
        assert not run_dir.exists()
    for address in (None, "auto", "local"):
        check_reachable(address)  # left to Ray
    cfg, _ = parse_args(["--env", "CartPole-v1", "--actors", "3", "--ray-address", "auto"])
    assert (cfg.actors, cfg.ray_address) == (3, "auto")


def test_actors_without_ray_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(ImportError, match=r"--actors needs the 'distributed' extra \(missing: ray\)"):
        train(resolve("cartpole", actors=2, run_dir=str(tmp_path / "run"), progress=False))
    assert not (tmp_path / "run").exists()


def test_failing_actors_back_off_then_end_the_run():
    """A lost chunk is logged and its actor asked again after a growing back-off; an
    actor that could not start, or that failed _MAX_FAILURES times in a row, ends the
    run with its error."""
    from types import SimpleNamespace

    from dqnfast.distributed import learner_loop as distributed

    logged = []
    fleet = SimpleNamespace(lost_chunks=0, failures=[0, 0], retry_at={}, learner=SimpleNamespace(
        step=7, log=SimpleNamespace(scalar=lambda *args: logged.append(args))))
    start = time.monotonic()
    distributed._Fleet.lost(fleet, 1, RuntimeError("died"))
    distributed._Fleet.lost(fleet, 1, RuntimeError("died"))
    assert logged == [("actors/lost_chunks", 1, 7), ("actors/lost_chunks", 2, 7)]
    assert fleet.failures == [0, 2] and list(fleet.retry_at) == [1]
    assert start + 2 * distributed._RETRY_S <= fleet.retry_at[1] <= time.monotonic() + 1.0
    init_failed = RuntimeError("no envpool on this node")
    init_failed.actor_init_failed = True
    with pytest.raises(RuntimeError, match="actor 0 failed 1 time.*no envpool on this node"):
        distributed._Fleet.lost(fleet, 0, init_failed)
    fleet.failures[1] = distributed._MAX_FAILURES - 1
    with pytest.raises(RuntimeError, match=f"actor 1 failed {distributed._MAX_FAILURES} time"):
        distributed._Fleet.lost(fleet, 1, RuntimeError("died"))


@pytest.fixture
def local_ray():
    """A Ray of this machine for one test (the run joins it), shut down after."""
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning")
    try:
        yield
    finally:
        ray.shutdown()


def test_a_transition_arrives_as_the_actor_observed_it(local_ray):
    """Chunks from a Ray actor, added by the learner, equal the adds of the same
    transitions played here: same env seed, the actions the chunks name. The actor's
    priorities are its network's TD errors against the buffer's n-step returns."""
    cfg = resolve("cartpole", env_options=dict(max_episode_steps=30), num_envs=3, chunk_steps=20,
                  prioritized=True, n_step=3, gamma=0.9, actors=1)
    config = {**vars(cfg), "hidden": list(cfg.hidden)}
    remote = ray.remote(Actor).remote(config, 0, 1, torch_threads=1)
    local = Actor(config, 0, 1)  # for its network
    weights = ray.put(weights_of(local.q_network))
    chunks = [ray.get(remote.collect.remote(1, [weights])) for _ in range(3)]
    env = envs.make(cfg.env, num_envs=3, seed=actor_seed(cfg.seed, 0), **cfg.env_options)
    by_chunks, direct = make_buffer(env, 3, prioritized=True), make_buffer(env, 3, prioritized=True)
    for chunk in chunks:
        assert not chunk.frames.flags.writeable  # Ray's own memory, not a copy
        add_chunk(by_chunks, chunk, 0)
    # Replay the chunks' actions env by env; reset steps, and envs whose sent
    # transitions are all replayed, take any action and add nothing.
    actions_of = [list(np.concatenate([c.action[c.env == e] for c in chunks])) for e in range(3)]
    priority_of = [np.concatenate([c.priority[c.env == e] for c in chunks]) for e in range(3)]
    replayed = [0, 0, 0]
    obs, resetting = env.reset(), np.zeros(3, bool)
    while any(replayed[e] < len(actions_of[e]) for e in range(3)):
        adding = [not resetting[e] and replayed[e] < len(actions_of[e]) for e in range(3)]
        actions = np.array([actions_of[e][replayed[e]] if adding[e] else 0 for e in range(3)])
        next_obs, reward, terminated, truncated, _ = env.step(actions)
        for e in np.flatnonzero(adding):
            direct.add(obs[e:e + 1], actions[e:e + 1], reward[e:e + 1], next_obs[e:e + 1],
                       terminated[e:e + 1], truncated[e:e + 1], env_ids=[e],
                       priority=priority_of[e][replayed[e]:replayed[e] + 1])
            replayed[e] += 1
        obs, resetting = next_obs, terminated | truncated  # next: a reset step
    env.close()
    buffers_equal(by_chunks, direct)
    # |Q(obs, action) - (reward + discount * max_a Q(next_obs))| of the buffer's windows.
    batch = direct.sample(len(direct))
    with torch.no_grad():
        q_taken = local.q_network(batch.obs).gather(1, batch.action[:, None])[:, 0]
        target = batch.reward + batch.discount * local.q_network(batch.next_obs).amax(dim=1)
    expected = (q_taken - target).abs().numpy()
    sent = np.array([priority_of[i % 3][i // 3] for i in batch.index.tolist()])
    np.testing.assert_allclose(sent, expected, rtol=1e-4, atol=1e-5)


def _actor_episodes(run_dir, actor):
    import csv
    with open(Path(run_dir) / "episodes.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["actor"] == str(actor)]


@pytest.mark.slow
def test_two_actors_solve_cartpole(local_ray, tmp_path):
    """The cartpole preset with 2 actors of 8 envs each: the least exploring actor's
    100-episode mean reaches 475, the single-process runs' bar. Actors race the learner,
    so a seed's runs differ: seed 1 solved in 162k and 184k steps of the preset's 400k,
    seed 2 once in 268k and once not within 400k; the budget here is twice the preset's."""
    run_dir = tmp_path / "run"
    budget = 2 * PRESETS["cartpole"]["total_steps"]
    result = train_distributed(resolve("cartpole", actors=2, total_steps=budget, progress=False,
                                       run_dir=str(run_dir)))
    assert result.solved, f"mean return {result.mean_return:.1f} after {result.steps} steps"
    assert result.mean_return >= 475.0
    assert _actor_episodes(run_dir, 0) and _actor_episodes(run_dir, 1)
    played = evaluate(run_dir, episodes=10, epsilon=0.0)
    assert played.mean >= 150.0, played


def test_a_killed_actor_is_restarted_and_the_run_goes_on(local_ray, tmp_path):
    run_dir = tmp_path / "run"
    rows_at_kill = []

    def kill_actor_1():
        while not rows_at_kill:
            time.sleep(0.2)
            rows = _actor_episodes(run_dir, 1) if (run_dir / "episodes.csv").exists() else []
            if len(rows) >= 5:
                [name] = [n for n in ray.util.list_named_actors()
                          if n.startswith(f"dqnfast-{os.getpid()}-") and n.endswith("-actor-1")]
                rows_at_kill.append(len(rows))
                ray.kill(ray.get_actor(name), no_restart=False)  # Ray restarts it

    killer = threading.Thread(target=kill_actor_1, daemon=True)
    killer.start()
    # 45 s of wall-clock: Ray's restart (seconds here) and many episodes after it.
    cfg = resolve("cartpole", actors=2, total_steps=10**7, reward_bound=None, progress=False,
                  run_dir=str(run_dir), max_minutes=0.75)
    result = train_distributed(cfg)
    killer.join(timeout=1)
    assert rows_at_kill and result.steps > 20_000
    assert "actors/lost_chunks" in (run_dir / "scalars.csv").read_text()
    # Back within seconds: actor 1's episodes go on after the kill (the episodes.csv
    # rows are flushed once a second, so a few may have been played before the kill).
    assert len(_actor_episodes(run_dir, 1)) > rows_at_kill[0] + 20, "actor 1 never came back"


def test_a_killed_learner_resumes_from_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    base = [sys.executable, "-m", "dqnfast.train", "--no-progress"]
    command = base + ["--env", "CartPole-v1", "--actors", "2", "--total-steps", "200000",
                      "--checkpoint-interval", "4000", "--run-dir", str(run_dir)]
    # A session of its own: the learner's Ray processes go with it afterwards.
    learner = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = run_dir / "checkpoint" / "state.pt"
        deadline = time.time() + 240
        while not state.exists() and time.time() < deadline and learner.poll() is None:
            time.sleep(0.5)
        assert state.exists(), "no checkpoint within 240 s"
        time.sleep(1.0)
        os.kill(learner.pid, signal.SIGKILL)
        learner.wait()
    finally:
        _kill_session(learner.pid)
    saved_step = torch.load(state, weights_only=False)["step"]
    resumed = subprocess.run(base + ["--resume", str(run_dir), "--total-steps",
                                     str(saved_step + 4000)],
                             cwd=REPO, capture_output=True, text=True, timeout=300,
                             start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stopped_at = int(resumed.stdout.split("Stopped after ")[1].split()[0])
    assert saved_step + 4000 <= stopped_at < saved_step + 4000 + 2 * 8 * 50  # a chunk each
    steps = [int(line.split(",")[0]) for line in
             (run_dir / "episodes.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] > saved_step


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
