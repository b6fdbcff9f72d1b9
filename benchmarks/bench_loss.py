"""DQN update-step benchmarks: dqnfast's loss against the textbook and the floor.

    python -m pytest benchmarks/bench_loss.py --benchmark-only

One update = loss, ``zero_grad``, backward, Adam step (fused), on a fixed random batch.
Groups: "update-cartpole-mlp" (MLP 128-128, 2 actions, batch 128, float32 states)
and "update-atari-cnn" (Nature CNN, 6 actions, batch 32, uint8 (4, 84, 84) frames),
each with torch on 1 thread and on 2 ("-1t", "-2t"). Variants:

  dqnfast             ``dqn_loss`` (Huber), and ``dqnfast-double`` with Double DQN;
                      ``dqnfast-contiguous``: the CNN's convolutions in the contiguous
                      (channels-first) layout instead of channels-last;
                      ``dqnfast-bf16``: ``--precision bfloat16`` (autocast)
  textbook-loop       the course notes' per-sample loop (``textbook_loss.per_sample_update``)
  chapter-calc-loss   the book chapter's vectorized ``calc_loss`` (MSE, numpy batch in)
  floor               forward + gather + backward + Adam: no target, no loss function
  floor+target        the floor plus one no-grad target forward: the work a DQN update
                      cannot skip

"""
import copy

import pytest
import torch

from dqnfast.loss import dqn_loss
from dqnfast.models import MLP, NatureDQN
from dqnfast.precision import autocast_of
from textbook_loss import chapter_calc_loss, per_sample_update, to_numpy_batch, to_transitions

GAMMA = 0.99
LEARNING_RATE = 1e-4

SETTINGS = {
    "cartpole-mlp": dict(make_network=MLP, network_args=(4, 2), obs_shape=(4,), obs_dtype=torch.float32,
                         num_actions=2, batch_size=128, rounds=None),
    # A Nature CNN update takes a good fraction of a second on two CPU cores: few rounds.
    "atari-cnn": dict(make_network=NatureDQN, network_args=((4, 84, 84), 6), obs_shape=(4, 84, 84),
                      obs_dtype=torch.uint8, num_actions=6, batch_size=32, rounds=20),
}


def random_batch(obs_shape, obs_dtype, num_actions, batch_size):
    generator = torch.Generator().manual_seed(0)
    if obs_dtype == torch.uint8:
        obs, next_obs = (torch.randint(0, 256, (batch_size, *obs_shape), dtype=torch.uint8,
                                       generator=generator) for _ in range(2))
    else:
        obs, next_obs = (torch.randn(batch_size, *obs_shape, generator=generator) for _ in range(2))
    action = torch.randint(0, num_actions, (batch_size,), generator=generator)
    reward = torch.randn(batch_size, generator=generator)
    terminated = torch.rand(batch_size, generator=generator) < 0.1
    return obs, action, reward, next_obs, terminated


def dqnfast_step(double_dqn, precision="float32"):
    def step(q_network, target_network, optimizer, batch):
        with autocast_of(precision, q_network):
            loss = dqn_loss(q_network, target_network, *batch, gamma=GAMMA,
                            double_dqn=double_dqn).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def textbook_loop_step(q_network, target_network, optimizer, transitions):
    per_sample_update(q_network, target_network, optimizer, transitions, GAMMA, torch.nn.SmoothL1Loss())


def chapter_step(q_network, target_network, optimizer, numpy_batch):
    optimizer.zero_grad()
    chapter_calc_loss(numpy_batch, q_network, target_network, GAMMA).backward()
    optimizer.step()


def floor_step(with_target):
    def step(q_network, target_network, optimizer, batch):
        obs, action, _, next_obs, _ = batch
        loss = q_network(obs).gather(1, action.unsqueeze(1)).sum()
        if with_target:
            with torch.no_grad():
                target_network(next_obs).amax(dim=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


VARIANTS = {
    "dqnfast": (dqnfast_step(double_dqn=False), lambda batch: batch),
    "dqnfast-double": (dqnfast_step(double_dqn=True), lambda batch: batch),
    "dqnfast-contiguous": (dqnfast_step(double_dqn=False), lambda batch: batch),
    "dqnfast-bf16": (dqnfast_step(double_dqn=False, precision="bfloat16"), lambda batch: batch),
    "textbook-loop": (textbook_loop_step, lambda batch: to_transitions(*batch)),
    "chapter-calc-loss": (chapter_step, lambda batch: to_numpy_batch(*batch)),
    "floor": (floor_step(with_target=False), lambda batch: batch),
    "floor+target": (floor_step(with_target=True), lambda batch: batch),
}


def check_textbook_loss_matches(network, batch, num_actions):
    """The baselines compute the same loss as dqnfast before any timing: the loop's
    mean over batch x actions is dqnfast's per-transition mean / num_actions."""
    q_network, target_network = copy.deepcopy(network), copy.deepcopy(network)
    expected = dqn_loss(q_network, target_network, *batch, gamma=GAMMA).loss.detach()
    optimizer = torch.optim.SGD(q_network.parameters(), lr=0.0)
    loop_loss = per_sample_update(q_network, target_network, optimizer, to_transitions(*batch),
                                  GAMMA, torch.nn.SmoothL1Loss())
    torch.testing.assert_close(loop_loss.detach() * num_actions, expected)
    chapter_loss = chapter_calc_loss(to_numpy_batch(*batch), q_network, target_network, GAMMA)
    expected_mse = dqn_loss(q_network, target_network, *batch, gamma=GAMMA, loss="mse").loss
    torch.testing.assert_close(chapter_loss, expected_mse)


@pytest.fixture(params=[1, 2], ids=["1t", "2t"])
def torch_threads(request):
    threads = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(threads)


# The memory layout is the CNN's alone.
CASES = [(setting, variant) for setting in SETTINGS for variant in VARIANTS
         if variant != "dqnfast-contiguous" or SETTINGS[setting]["make_network"] is NatureDQN]


@pytest.mark.parametrize("setting,variant", CASES)
def test_update(benchmark, setting, variant, torch_threads):
    config = SETTINGS[setting]
    benchmark.group = f"update-{setting}-{torch_threads}t"
    benchmark.extra_info["torch_threads"] = torch_threads
    torch.manual_seed(0)
    layout = {"channels_last": False} if variant == "dqnfast-contiguous" else {}
    network = config["make_network"](*config["network_args"], **layout)
    batch = random_batch(config["obs_shape"], config["obs_dtype"], config["num_actions"],
                         config["batch_size"])
    if variant == "textbook-loop":
        check_textbook_loss_matches(network, batch, config["num_actions"])

    step, prepare = VARIANTS[variant]
    q_network, target_network = network, copy.deepcopy(network)
    # Fused, as dqnfast.train makes it (all parameters in one kernel).
    optimizer = torch.optim.Adam(q_network.parameters(), lr=LEARNING_RATE, fused=True)
    args = (q_network, target_network, optimizer, prepare(batch))
    if config["rounds"] is None:
        benchmark(step, *args)
    else:
        benchmark.pedantic(step, args, rounds=config["rounds"], warmup_rounds=1)
