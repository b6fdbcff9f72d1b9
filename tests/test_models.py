import pytest
import torch

from dqnfast.models import MLP, DuelingHead, NatureDQN, make_q_network


def conv_output_size(height, width):
    """Hand arithmetic for the Nature convs: out = (in - kernel) // stride + 1."""
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return 64 * height * width


def first_linear(module):
    return next(m for m in module.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("obs_shape, expected_features", [((4, 84, 84), 3136), ((1, 64, 64), 1024),
                                                          ((3, 60, 80), None)])
@pytest.mark.parametrize("dueling", [False, True])
def test_nature_dqn_sizes_follow_the_input(obs_shape, expected_features, dueling):
    net = NatureDQN(obs_shape, num_actions=6, dueling=dueling)
    features = conv_output_size(*obs_shape[1:])
    if expected_features is not None:
        assert features == expected_features
    assert first_linear(net.head).in_features == features
    obs = torch.randint(0, 256, (5, *obs_shape), dtype=torch.uint8)
    assert net(obs).shape == (5, 6)


def test_nature_dqn_layers_are_the_papers():
    net = NatureDQN((4, 84, 84), num_actions=18)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    linears = [m for m in net.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3136, 512), (512, 18)]


def test_nature_dqn_scales_uint8_input():
    torch.manual_seed(0)
    net = NatureDQN((4, 84, 84), num_actions=4)
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    from_uint8 = net(frames)
    torch.testing.assert_close(from_uint8, net(frames.float() / 255))
    # The raw scale through the same weights gives something else: the scaling happened.
    assert not torch.allclose(from_uint8, net(frames.float()))


def test_nature_dqn_layouts_compute_the_same_q_values_and_gradients():
    """Channels-last (the default) and contiguous convolutions are one computation in
    two memory orders: same values to float32 rounding, state dicts interchangeable."""
    torch.manual_seed(0)
    fast = NatureDQN((4, 84, 84), 6)
    plain = NatureDQN((4, 84, 84), 6, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert fast.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.features[0].weight.is_contiguous()
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    q_fast, q_plain = fast(obs), plain(obs)
    torch.testing.assert_close(q_fast, q_plain, rtol=1e-5, atol=1e-5)
    q_fast.square().sum().backward()
    q_plain.square().sum().backward()
    for a, b in zip(fast.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_nature_dqn_under_bfloat16_autocast_keeps_its_head_in_float32():
    """Convolutions in bfloat16, the fully connected head in float32: Q-values are
    float32 sums, not bfloat16-rounded ones."""
    torch.manual_seed(0)
    net = NatureDQN((4, 84, 84), 6)
    seen = {}
    net.features.register_forward_hook(lambda module, args, out: seen.update(features=out.dtype))
    net.head.register_forward_hook(lambda module, args, out: seen.update(head=out.dtype))
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = net(obs)
    assert seen == {"features": torch.bfloat16, "head": torch.float32}
    assert q.dtype == torch.float32
    reference = net(obs)  # float32 throughout
    assert seen == {"features": torch.float32, "head": torch.float32}
    torch.testing.assert_close(q, reference, rtol=0.05, atol=0.02)
    assert not torch.equal(q, q.to(torch.bfloat16).float())  # not rounded to bfloat16


def test_nature_dqn_rejects_non_image_shapes():
    with pytest.raises(ValueError, match="channels, height, width"):
        NatureDQN((84, 84), num_actions=4)


@pytest.mark.parametrize("hidden", [(128, 128), (64,), ()])
@pytest.mark.parametrize("dueling", [False, True])
def test_mlp_shapes(hidden, dueling):
    net = MLP(4, 2, hidden, dueling=dueling)
    assert net(torch.randn(7, 4)).shape == (7, 2)
    widths = [m.out_features for m in net.features if isinstance(m, torch.nn.Linear)]
    assert widths == list(hidden)


@pytest.mark.parametrize("make_net, obs", [
    (lambda: NatureDQN((4, 36, 36), 5, dueling=True),
     torch.randint(0, 256, (6, 4, 36, 36), dtype=torch.uint8)),
    (lambda: MLP(8, 5, dueling=True), torch.randn(6, 8)),
])
def test_dueling_head_subtracts_the_mean_advantage(make_net, obs):
    torch.manual_seed(1)
    net = make_net()
    assert isinstance(net.head, DuelingHead)
    features = net.features(obs.float() / 255 if obs.dtype == torch.uint8 else obs)
    value = net.head.value(features)
    advantage = net.head.advantage(features)
    q = net(obs)
    # Mean over actions of Q is V; Q minus its mean is A minus its mean.
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)
    torch.testing.assert_close(q - q.mean(dim=1, keepdim=True),
                               advantage - advantage.mean(dim=1, keepdim=True))
    torch.testing.assert_close(q, value + advantage - advantage.mean(dim=1, keepdim=True))


def test_make_q_network_picks_by_observation_space():
    assert isinstance(make_q_network((4, 84, 84), torch.uint8, 6), NatureDQN)
    mlp = make_q_network((4,), torch.float32, 2, hidden=(32,), dueling=True)
    assert isinstance(mlp, MLP) and isinstance(mlp.head, DuelingHead)
    with pytest.raises(ValueError, match="no default Q-network"):
        make_q_network((4, 84, 84), torch.float32, 6)
    with pytest.raises(ValueError, match="no default Q-network"):
        make_q_network((2, 3), torch.float32, 6)
