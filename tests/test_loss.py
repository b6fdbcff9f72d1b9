import pytest
import torch

from dqnfast.loss import dqn_loss
from dqnfast.models import MLP, NatureDQN

GAMMA = 0.99
BATCH_SIZE = 16


def textbook_loss(q_network, target_network, obs, action, reward, next_obs, terminated, *,
                  gamma=None, loss, double_dqn, discount=None, weight=None, td_errors=None):
    """The loss written out one transition at a time, as the textbooks explain it
    (``td_errors``, a list, receives each Q(s, a) - y)."""
    per_sample = []
    for i in range(len(obs)):
        q_taken = q_network(obs[i:i + 1])[0, action[i]]
        with torch.no_grad():
            next_q = target_network(next_obs[i:i + 1])[0]
            if double_dqn:
                next_value = next_q[q_network(next_obs[i:i + 1])[0].argmax()]
            else:
                next_value = next_q.max()
            bootstrap = gamma if discount is None else discount[i]
            target = reward[i] + bootstrap * next_value * (1 - float(terminated[i]))
        error = q_taken - target
        if td_errors is not None:
            td_errors.append(error.detach())
        if loss == "mse":
            sample_loss = error ** 2
        elif abs(error) < 1:  # Huber with delta 1
            sample_loss = 0.5 * error ** 2
        else:
            sample_loss = abs(error) - 0.5
        per_sample.append(sample_loss if weight is None else weight[i] * sample_loss)
    return sum(per_sample) / len(per_sample)


def mlp_case(generator):
    obs = torch.randn(BATCH_SIZE, 4, generator=generator)
    next_obs = torch.randn(BATCH_SIZE, 4, generator=generator)
    return MLP(4, 3), MLP(4, 3), obs, next_obs


def cnn_case(generator):
    # Smaller frames than Atari's 84x84 keep the per-sample loop quick; the
    # arithmetic does not depend on the size.
    shape = (BATCH_SIZE, 4, 44, 44)
    obs = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    next_obs = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    return NatureDQN(shape[1:], 6), NatureDQN(shape[1:], 6), obs, next_obs


def random_batch(make_case, seed=0):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    q_network, target_network, obs, next_obs = make_case(generator)
    num_actions = q_network(obs[:1]).shape[1]
    action = torch.randint(0, num_actions, (BATCH_SIZE,), generator=generator)
    # Rewards of a few units put TD errors on both sides of the Huber kink.
    reward = 3 * torch.randn(BATCH_SIZE, generator=generator)
    terminated = torch.zeros(BATCH_SIZE, dtype=torch.bool)
    terminated[::3] = True
    return q_network, target_network, (obs, action, reward, next_obs, terminated)


@pytest.mark.parametrize("make_case", [mlp_case, cnn_case], ids=["mlp", "nature-cnn"])
@pytest.mark.parametrize("loss", ["huber", "mse"])
@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double-dqn"])
def test_loss_and_gradients_match_the_per_sample_loop(make_case, loss, double_dqn):
    q_network, target_network, batch = random_batch(make_case)
    params = list(q_network.parameters())

    result = dqn_loss(q_network, target_network, *batch, gamma=GAMMA, loss=loss,
                      double_dqn=double_dqn)
    expected = textbook_loss(q_network, target_network, *batch, gamma=GAMMA, loss=loss,
                             double_dqn=double_dqn)

    torch.testing.assert_close(result.loss, expected)
    for grad, expected_grad in zip(torch.autograd.grad(result.loss, params),
                                   torch.autograd.grad(expected, params)):
        torch.testing.assert_close(grad, expected_grad)
    obs, action = batch[0], batch[1]
    torch.testing.assert_close(result.q_taken, q_network(obs)[torch.arange(BATCH_SIZE), action])
    assert not result.q_taken.requires_grad


@pytest.mark.parametrize("make_case", [mlp_case, cnn_case], ids=["mlp", "nature-cnn"])
@pytest.mark.parametrize("loss", ["huber", "mse"])
@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_n_step_discounts_weights_and_td_errors_match_the_per_sample_loop(make_case, loss, weighted):
    q_network, target_network, batch = random_batch(make_case)
    generator = torch.Generator().manual_seed(1)
    # n-step batches: gamma^k for windows of k = 1..3 steps, 0 where the episode terminated.
    discount = GAMMA ** torch.randint(1, 4, (BATCH_SIZE,), generator=generator).float()
    discount[batch[4]] = 0.0
    weight = torch.rand(BATCH_SIZE, generator=generator) if weighted else None
    params = list(q_network.parameters())

    result = dqn_loss(q_network, target_network, *batch, discount=discount, weight=weight,
                      loss=loss, double_dqn=True)
    td_errors = []
    expected = textbook_loss(q_network, target_network, *batch, discount=discount, weight=weight,
                             loss=loss, double_dqn=True, td_errors=td_errors)

    torch.testing.assert_close(result.loss, expected)
    for grad, expected_grad in zip(torch.autograd.grad(result.loss, params),
                                   torch.autograd.grad(expected, params)):
        torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(result.td_error, torch.stack(td_errors))
    assert not result.td_error.requires_grad


def test_a_constant_discount_is_gamma():
    q_network, target_network, batch = random_batch(mlp_case)
    with_gamma = dqn_loss(q_network, target_network, *batch, gamma=GAMMA)
    with_discount = dqn_loss(q_network, target_network, *batch,
                             discount=torch.full((BATCH_SIZE,), GAMMA))
    torch.testing.assert_close(with_discount.loss, with_gamma.loss)
    torch.testing.assert_close(with_discount.td_error, with_gamma.td_error)


def test_the_batch_exercises_both_huber_branches():
    q_network, target_network, batch = random_batch(mlp_case)
    obs, action, reward, next_obs, terminated = batch
    with torch.no_grad():
        target = reward + GAMMA * target_network(next_obs).amax(1) * ~terminated
        error = (q_network(obs)[torch.arange(BATCH_SIZE), action] - target).abs()
    assert (error < 1).any() and (error > 1).any()


def test_gradients_reach_only_the_online_network():
    q_network, target_network, batch = random_batch(mlp_case)
    dqn_loss(q_network, target_network, *batch, gamma=GAMMA, double_dqn=True).loss.backward()
    assert all(p.grad is not None for p in q_network.parameters())
    assert all(p.grad is None for p in target_network.parameters())


def test_terminal_targets_are_the_reward_even_when_the_next_value_is_not_finite():
    q_network, _, batch = random_batch(mlp_case)
    obs, action, reward, next_obs, _ = batch
    terminated = torch.ones(BATCH_SIZE, dtype=torch.bool)

    def infinite_target_network(x):
        return torch.full((len(x), 3), float("inf"))

    result = dqn_loss(q_network, infinite_target_network, obs, action, reward, next_obs,
                      terminated, gamma=GAMMA, loss="mse")
    q_taken = q_network(obs)[torch.arange(BATCH_SIZE), action]
    torch.testing.assert_close(result.loss, ((q_taken - reward) ** 2).mean())


def test_gamma_zero_regresses_on_the_reward():
    q_network, target_network, batch = random_batch(mlp_case)
    reward = batch[2]
    result = dqn_loss(q_network, target_network, *batch, gamma=0.0, loss="mse")
    torch.testing.assert_close(result.loss, ((result.q_taken - reward) ** 2).mean())


def replace(batch, **changes):
    fields = dict(zip(["obs", "action", "reward", "next_obs", "terminated"], batch))
    fields.update(changes)
    return fields


@pytest.mark.parametrize("mutate, error, message", [
    (lambda b: replace(b, action=b[1].float()), TypeError, "action must be int64"),
    (lambda b: replace(b, action=b[1].unsqueeze(1)), ValueError, r"action must have shape \(batch,\)"),
    (lambda b: replace(b, reward=b[2].unsqueeze(1)), ValueError, r"reward must have shape \(batch,\)"),
    (lambda b: replace(b, reward=b[2].long()), TypeError, "reward must be floating point"),
    (lambda b: replace(b, terminated=b[4].to(torch.uint8)), TypeError, "terminated must be bool"),
    (lambda b: replace(b, terminated=b[4][:-1]), ValueError, r"terminated must have shape \(batch,\)"),
    (lambda b: replace(b, next_obs=b[3][:-1]), ValueError, "obs and next_obs must have the same"),
    (lambda b: replace(b, next_obs=b[3].double()), ValueError, "obs and next_obs must have the same"),
    (lambda b: replace(b, obs=b[0][0], next_obs=b[3][0]), ValueError, r"obs must be \(batch"),
])
def test_bad_batches_raise_clearly(mutate, error, message):
    q_network, target_network, batch = random_batch(mlp_case)
    with pytest.raises(error, match=message):
        dqn_loss(q_network, target_network, **mutate(batch), gamma=GAMMA)


@pytest.mark.parametrize("options, message", [
    ({"gamma": GAMMA, "loss": "l1"}, "loss must be one of"),
    ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
    ({"gamma": -0.1}, r"gamma must be in \[0, 1\]"),
    ({}, "either gamma .* or discount .*, not neither"),
    ({"gamma": GAMMA, "discount": torch.ones(BATCH_SIZE)}, "not both"),
    ({"discount": torch.ones(BATCH_SIZE, 1)}, r"discount must have shape \(batch,\)"),
    ({"gamma": GAMMA, "weight": torch.ones(BATCH_SIZE - 1)}, r"weight must have shape \(batch,\)"),
])
def test_bad_options_raise_clearly(options, message):
    q_network, target_network, batch = random_batch(mlp_case)
    with pytest.raises(ValueError, match=message):
        dqn_loss(q_network, target_network, *batch, **options)


@pytest.mark.parametrize("name", ["discount", "weight"])
def test_integer_discounts_or_weights_are_refused(name):
    q_network, target_network, batch = random_batch(mlp_case)
    options = {"discount": torch.ones(BATCH_SIZE)} | {name: torch.ones(BATCH_SIZE, dtype=torch.int64)}
    with pytest.raises(TypeError, match=f"{name} must be floating point, got torch.int64"):
        dqn_loss(q_network, target_network, *batch, **options)
