"""The presets --env picks: every Atari game the `atari` one, Pong its own."""
import dataclasses
from pathlib import Path

import pytest

from dqnfast import learner
from dqnfast.config import Config
from dqnfast.presets import ATARI_GPU, describe_settings, parse_args, resolve, setting_sources
from dqnfast.train import train

# The settings that learn Atari in general (Tianshou's Atari DQN, Rainbow's replay, the
# Nature budget) and the 2-core CPU's.
ATARI = dict(num_envs=10, train_frequency=1, batch_size=32, n_step=3, buffer_size=100_000,
             optimizer="adam", learning_rate=1e-4, adam_eps=1.5e-4, target_update_interval=5_000,
             gamma=0.99, loss="huber", prioritized=True, alpha=0.5, beta_start=0.4, beta_end=1.0,
             learning_starts=20_000, epsilon_start=1.0, epsilon_end=0.05,
             epsilon_decay_steps=1_000_000, total_steps=10_000_000, reward_bound=None,
             checkpoint_interval=250_000, env_options={"num_threads": 1}, torch_threads=1,
             async_envs=True)

# Every value the pong preset resolves to (the recorded runs were trained with them).
PONG = dict(
    env="Pong-v5", num_envs=10, seed=1, env_options={"num_threads": 1}, buffer_size=100_000,
    learning_starts=20_000, batch_size=32, n_step=3, prioritized=True, alpha=0.5, beta_start=0.4,
    beta_end=1.0, priority_eps=1e-06, gamma=0.99, optimizer="adam", learning_rate=1e-4,
    adam_eps=1.5e-4, max_grad_norm=None, loss="huber", double_dqn=False, dueling=False,
    hidden=(128, 128), train_frequency=1, gradient_steps=1, target_update_interval=5_000,
    tau=1.0, precision="float32", epsilon_schedule="linear", epsilon_start=1.0,
    epsilon_end=0.01, epsilon_decay_steps=250_000, total_steps=3_000_000, reward_bound=19.5,
    cuda=False, cuda_graph=True, replay_on_gpu=True, async_envs=True, acting_refresh_updates=1,
    torch_threads=1,
    run_dir=None, overwrite=False, checkpoint_interval=250_000, max_minutes=None, progress=True,
    preset="pong", actors=None, ray_address=None, chunk_steps=50, weight_sync_interval=100,
    actor_cpus=1.0, ratio_policy="throttle")


@pytest.mark.parametrize("env", ["Breakout-v5", "ALE/MsPacman-v5", "SpaceInvaders-v5",
                                 "ALE/Breakout-v5"])
def test_every_atari_game_gets_the_atari_preset(env):
    cfg, _ = parse_args(["--env", env])
    assert (cfg.env, cfg.preset) == (env, "atari")
    assert {name: getattr(cfg, name) for name in ATARI} == ATARI
    assert parse_args(["--env", env, "--reward", "30"])[0].reward_bound == 30.0


@pytest.mark.parametrize("env", ["Pong-v5", "ALE/Pong-v5"])
def test_pong_keeps_its_own_preset(env):
    cfg, _ = parse_args(["--env", env])
    assert dataclasses.asdict(cfg) == {**PONG, "env": env}
    assert dataclasses.asdict(parse_args([])[0]) == PONG  # the default env


@pytest.mark.parametrize("env", ["Pong-v5", "Breakout-v5"])
def test_cuda_gives_the_atari_presets_their_gpu_values(env):
    cfg, _ = parse_args(["--env", env, "--cuda", "--seed", "3"])
    assert {name: getattr(cfg, name) for name in ATARI_GPU} == ATARI_GPU
    # 4 transitions sampled per env step, beyond Tianshou's 3.2.
    assert cfg.batch_size * cfg.gradient_steps / (cfg.num_envs * cfg.train_frequency) >= 3.2
    sources = setting_sources(cfg)
    assert {sources[name] for name in ATARI_GPU} == {"GPU values (--cuda)"}
    assert sources["seed"] == sources["cuda"] == "given"
    assert sources["learning_rate"] == f"preset {cfg.preset}" and sources["dueling"] == "default"
    # A flag still wins over the GPU values, and the printed table says so.
    cfg, _ = parse_args(["--env", env, "--cuda", "--num-envs", "8"])
    assert cfg.num_envs == 8 and setting_sources(cfg)["num_envs"] == "given"
    assert "  given: num_envs=8" in describe_settings(cfg)
    # Without --cuda, and for presets other than Atari's, no GPU values.
    assert parse_args(["--env", env])[0].num_envs == 10
    assert parse_args(["--env", "CartPole-v1", "--cuda"])[0].num_envs == 8


def test_no_bound_unless_a_preset_or_flag_names_one():
    assert Config().reward_bound is None
    assert resolve("atari").reward_bound is None


def test_a_random_policy_never_solves_an_atari_game(tmp_path, monkeypatch):
    """Random MsPacman: no updates (learning never starts), 100-step games. Its mean
    return is well above Pong's bound, 19.5, which is no bound for MsPacman."""
    pytest.importorskip("ale_py")
    monkeypatch.chdir(tmp_path)  # the default run folder, under runs/
    monkeypatch.setattr(learner, "RETURN_WINDOW", 10)  # "solved" decided after 10 games
    cfg = resolve(env="ALE/MsPacman-v5", total_steps=1_100, learning_starts=10**9,
                  buffer_size=2_000, progress=False,
                  env_options=dict(num_threads=1, backend="ale", max_episode_frames=400))
    result = train(cfg)
    assert result.episodes >= 10 and result.mean_return > 19.5
    assert result.solved is False
    assert result.run_dir.parent == Path("runs")
    assert result.run_dir.name.startswith("ALE-MsPacman-v5__atari__")


def test_help_describes_every_flag(capsys):
    """Each flag's text is its Config field's own description."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    # Compared without whitespace: argparse wraps lines, also at hyphens.
    text = "".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Config):
        if f.name != "env_options":  # set by presets and --backend, no flag of its own
            assert "".join(f.metadata["help"].split()) in text, f.name
    assert "--rewardREWARD_BOUNDstoponcethe100-episodemeanreturnreachesit" in text
