"""Each initializer: shape, the variance it claims, orthogonality, seeding, and no global RNG use."""

import math

import pytest
import torch

from gradlab.inits import INITS, get_init
from gradlab.mlp import MLP

# Both orientations, so fan_in and fan_out cannot be swapped unnoticed.
LARGE_SHAPES = [(512, 384), (384, 512)]


def sample(name: str, fan_in: int, fan_out: int, seed: int = 0) -> torch.Tensor:
    return INITS[name].sample(fan_in, fan_out, torch.Generator().manual_seed(seed), torch.float64)


@pytest.mark.parametrize("name", sorted(INITS))
@pytest.mark.parametrize(("fan_in", "fan_out"), [(7, 3), (3, 7), (5, 5), (1, 4)])
def test_init_has_shape_fan_in_by_fan_out(name, fan_in, fan_out):
    w = sample(name, fan_in, fan_out)
    assert w.shape == (fan_in, fan_out)
    assert w.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(INITS))
def test_init_returns_requested_dtype(name, dtype):
    assert INITS[name].sample(6, 4, torch.Generator().manual_seed(0), dtype).dtype == dtype


@pytest.mark.parametrize("name", sorted(INITS))
@pytest.mark.parametrize(("fan_in", "fan_out"), LARGE_SHAPES)
def test_init_empirical_variance_matches_claimed_variance(name, fan_in, fan_out):
    w = sample(name, fan_in, fan_out)
    claimed = INITS[name].variance(fan_in, fan_out)
    # ~2e5 entries: the sampling error of the variance is < 0.5%, so 3% is a wide margin.
    assert w.var().item() == pytest.approx(claimed, rel=0.03)
    # Zero mean: within 5 standard errors of the mean.
    assert abs(w.mean().item()) < 5 * (claimed / w.numel()) ** 0.5


@pytest.mark.parametrize("name", sorted(INITS))
def test_mlp_layers_use_fan_in_by_fan_out_weights_and_zero_biases(name):
    sizes = [6, 5, 3, 2]
    net = MLP(sizes, activation="tanh", init=name, seed=3, dtype=torch.float64)
    assert [tuple(w.shape) for w in net.weights] == [(6, 5), (5, 3), (3, 2)]
    assert [tuple(b.shape) for b in net.biases] == [(5,), (3,), (2,)]
    for b in net.biases:
        assert b.dtype == torch.float64
        assert torch.equal(b, torch.zeros_like(b))


@pytest.mark.parametrize(("fan_in", "fan_out"), [(64, 16), (16, 64), (32, 32)])
def test_orthogonal_has_orthonormal_columns_or_rows(fan_in, fan_out):
    w = sample("orthogonal", fan_in, fan_out)
    gram = w.T @ w if fan_in >= fan_out else w @ w.T  # (min, min)
    torch.testing.assert_close(gram, torch.eye(min(fan_in, fan_out), dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(INITS))
def test_same_seed_gives_identical_weights(name):
    a = MLP([8, 6, 4], init=name, seed=11, dtype=torch.float64)
    b = MLP([8, 6, 4], init=name, seed=11, dtype=torch.float64)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        assert torch.equal(wa, wb)


@pytest.mark.parametrize("name", sorted(INITS))
def test_different_seed_gives_different_weights(name):
    a = MLP([8, 6, 4], init=name, seed=11, dtype=torch.float64)
    b = MLP([8, 6, 4], init=name, seed=12, dtype=torch.float64)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        assert not torch.equal(wa, wb)


@pytest.mark.parametrize("name", sorted(INITS))
def test_layers_of_one_mlp_draw_different_weights(name):
    # One generator feeds all layers in turn; equal-shaped layers must not repeat each other.
    net = MLP([6, 6, 6, 6], init=name, seed=0, dtype=torch.float64)
    assert not torch.equal(net.weights[0], net.weights[1])
    assert not torch.equal(net.weights[1], net.weights[2])


@pytest.mark.parametrize("name", sorted(INITS))
def test_seed_fixes_the_weights_and_one_replica_is_the_plain_network(name):
    plain = MLP([8, 6, 4], init=name, seed=5, dtype=torch.float64)
    one = MLP([8, 6, 4], init=name, seed=5, replicas=1, dtype=torch.float64)
    first_of_two = MLP([8, 6, 4], init=name, seed=5, replicas=2, dtype=torch.float64)
    assert plain.replicas == one.replicas == 1 and not plain.batched and first_of_two.batched
    for wp, wo, w2 in zip(plain.weights, one.weights, first_of_two.weights, strict=True):
        assert wp.shape == wo.shape == w2.shape[1:] and torch.equal(wp, wo) and torch.equal(wp, w2[0])


def test_zero_replicas_is_rejected():
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        MLP([8, 6, 4], replicas=0)


@pytest.mark.parametrize("gain", [0.0, 0.5, 2.5])
@pytest.mark.parametrize("name", sorted(INITS))
def test_init_gain_scales_weights_exactly(name, gain):
    base = MLP([8, 6, 4], init=name, seed=7, dtype=torch.float64)
    scaled = MLP([8, 6, 4], init=name, seed=7, dtype=torch.float64, init_gain=gain)
    for w, ws in zip(base.weights, scaled.weights, strict=True):
        assert torch.equal(ws, gain * w)
    for b in scaled.biases:
        assert torch.equal(b, torch.zeros_like(b))


@pytest.mark.parametrize("name", sorted(INITS))
def test_building_an_mlp_leaves_global_rng_untouched(name):
    with torch.random.fork_rng(devices=[]):
        # Move the global state off any fresh-seed state, so a hidden torch.manual_seed(seed) shows.
        torch.manual_seed(2024)
        torch.rand(17)
        before = torch.get_rng_state()
        net = MLP([8, 6, 4], init=name, seed=0, dtype=torch.float64)
        net.backward(net.forward(torch.ones(2, 8, dtype=torch.float64)))
        after = torch.get_rng_state()
    assert torch.equal(before, after)


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match=r"Unknown init 'kaiming'.*kaiming_normal"):
        get_init("kaiming")


def test_bias_std_draws_normal_biases_and_leaves_the_weights_alone():
    plain = MLP([30, 400, 400, 5], "tanh", "lecun_normal", seed=4, dtype=torch.float64)
    biased = MLP([30, 400, 400, 5], "tanh", "lecun_normal", seed=4, dtype=torch.float64, bias_std=0.3)
    assert all(torch.equal(a, b) for a, b in zip(plain.weights, biased.weights, strict=True))
    assert all(torch.equal(b, torch.zeros_like(b)) for b in plain.biases)
    drawn = torch.cat(biased.biases)  # 805 draws of N(0, 0.09)
    assert drawn.mean().abs() < 4 * 0.3 / math.sqrt(805)
    assert drawn.std().item() == pytest.approx(0.3, rel=0.1)
