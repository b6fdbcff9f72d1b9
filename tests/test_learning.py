"""Learning tests: the presets must actually solve their tasks, on CPU, within a budget.

CartPole-v1: the 100-episode mean of the training episodes reaches 475 within the
preset's step budget (its runs took 166k-290k of 400k steps) for three seeds.
FrozenLake-v1 (slippery): the best model plays 1,000 greedy episodes and succeeds in
at least 70% of them (the optimal policy: about 74%).
"""
import pytest

from dqnfast.presets import PRESETS, resolve
from dqnfast.evaluate import evaluate
from dqnfast.train import train

pytestmark = pytest.mark.slow  # minutes of training


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cartpole_preset_solves(seed, tmp_path):
    cfg = resolve("cartpole", seed=seed, progress=False, run_dir=str(tmp_path / "run"))
    result = train(cfg)
    assert result.solved, f"seed {seed}: mean return {result.mean_return:.1f} after {result.steps} steps"
    assert result.mean_return >= 475.0
    assert result.steps <= PRESETS["cartpole"]["total_steps"]


@pytest.mark.parametrize("seed", [1, 2])
def test_frozenlake_preset_reaches_greedy_success_rate(seed, tmp_path):
    cfg = resolve("frozenlake", seed=seed, progress=False, run_dir=str(tmp_path / "run"))
    result = train(cfg)
    evaluation = evaluate(result.run_dir, episodes=1000, epsilon=0.0, num_envs=16, seed=seed)
    assert len(evaluation.returns) == 1000
    assert evaluation.mean >= 0.7, f"seed {seed}: greedy success rate {evaluation.mean:.3f}"
