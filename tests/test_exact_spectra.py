"""The Jacobian's spectrum is exact at any depth: float64 whatever the network's dtype, and never an explicit
product, so that singular values far below the largest (e^-2000 at depth 1000) keep their relative accuracy."""

import functools
import math

import mpmath
import pytest
import torch

from gradlab.architecture import ARCHS
from gradlab.jacobian import jacobian_rows, log_singular_values
from gradlab.layers import NORM_CHOICES
from gradlab.mlp import MLP
from gradlab.product_svd import jacobi_log_svd, product_log_singular_values

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("depth", [10, 100, 1000])
def test_log_det_of_a_gaussian_linear_net_is_the_sum_of_its_layers_log_dets(depth):
    """J = W^1 ... W^{depth-1} (as row vectors pass through), so ln|det J| = sum_l ln|det W^l| for every example;
    the network is float32, as a run's is: J is taken in float64 of the same weights."""
    width = 16
    net = MLP([width] * (depth + 1), "linear", "lecun_normal", seed=depth)
    x = torch.randn(3, width, generator=torch.Generator().manual_seed(1))
    logs = log_singular_values(net, x)
    expected = sum(torch.linalg.slogdet(w.double()).logabsdet for w in net.weights[:-1])
    assert logs.shape == (3, width) and logs.isfinite().all()
    torch.testing.assert_close(logs.sum(-1), expected.expand(3), rtol=1e-8, atol=0)
    if depth == 1000:
        assert logs.min() < math.log(torch.finfo(F64).tiny)  # below float64's range: only ln s holds it


def test_orthogonal_linear_net_is_an_isometry_at_depth_200():
    net = MLP([32] * 201, "linear", "orthogonal", seed=3)
    logs = log_singular_values(net, torch.randn(2, 32, generator=torch.Generator().manual_seed(0)))
    assert logs.abs().max() < 1e-5  # float32 weights: each orthogonal to about 1e-7, 199 of them
    exact = MLP([32] * 201, "linear", "orthogonal", seed=3, dtype=F64)
    assert log_singular_values(exact, torch.zeros(1, 32, dtype=F64)).abs().max() < 1e-12


def hidden_output(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """h^{depth-1} by the network's own layers in evaluation mode: x^{depth-1}, or phi(n(x^{depth-1})) for a plain
    net, as the readout's cache holds it."""
    for l in range(1, net.depth):
        x, _ = net.layer_forward(l, x, training=False)
    return net.layer_forward(net.depth, x, training=False)[1].phi_u if net.architecture.outputs_phi else x


def jacrev_spectrum(net: MLP, x: torch.Tensor) -> torch.Tensor:
    last_hidden = functools.partial(hidden_output, net)

    one = lambda v: last_hidden(v.unsqueeze(0))[0]  # noqa: E731  one example as a batch of one
    return torch.linalg.svdvals(torch.stack([torch.func.jacrev(one)(example) for example in x]))


@pytest.mark.parametrize("activation", ["tanh", "relu", "selu"])
@pytest.mark.parametrize("norm", NORM_CHOICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_spectrum_at_small_depth_equals_svdvals_of_jacrev_in_float64(arch, norm, activation):
    net = MLP([6, 7, 7, 7, 3], activation, "xavier_normal", seed=2, dtype=F64, arch=arch, norm=norm, bias_std=0.1)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=F64)
    expected = jacrev_spectrum(net, x)
    logs = log_singular_values(net, x)
    floor = expected < 1e-12 * expected[..., :1]  # where the explicit product holds round-off, not the value
    assert (floor | ~logs.isinf()).all()  # an exact zero here is at round-off there
    if (arch, norm, activation) == ("plain", "none", "relu"):
        assert (logs.isinf() == floor).all() and floor.any()  # ReLU's tiny ones are its exact zeros
    resolved = expected > 1e-9 * expected[..., :1]
    torch.testing.assert_close(logs.exp()[resolved], expected[resolved], rtol=1e-9, atol=0)


def test_smallest_singular_value_of_a_narrow_deep_tanh_net_agrees_with_500_digit_arithmetic():
    """Each layer's Jacobian (from autograd, float64) multiplied out with mpmath at 500 digits: the reference."""
    net = MLP([4] * 121 + [2], "tanh", "xavier_normal", seed=4, dtype=F64, bias_std=0.3)
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    mpmath.mp.dps = 500
    product, h = mpmath.eye(4), x[0]
    maps = [lambda v, l=l: net.layer_forward(l, v.unsqueeze(0), training=False)[0][0] for l in range(1, net.depth)]
    maps.append(lambda v: net.layer_forward(net.depth, v.unsqueeze(0), training=False)[1].phi_u[0])  # h = phi(x)
    for layer_map in maps:
        product = mpmath.matrix(torch.func.jacrev(layer_map)(h).tolist()) * product
        h = layer_map(h)
    reference = sorted((float(mpmath.log(s)) for s in mpmath.svd_r(product, compute_uv=False)), reverse=True)
    logs = log_singular_values(net, x)[0].tolist()
    assert reference[-1] < -50  # the test's point: far below what an explicit float64 product resolves
    for measured, exact in zip(logs, reference, strict=True):
        assert abs(math.expm1(measured - exact)) < 1e-6


def test_exact_zeros_are_counted_apart_from_tiny_values():
    """Five of eight ReLU units off in the first layer: rank 3, so five singular values exactly 0 (-inf); a deep
    sigmoid net's tiny ones (e^-40 and below) are not zeros."""
    relu = MLP([8, 8, 8, 2], "relu", "xavier_normal", seed=0, dtype=F64)
    relu.biases[0] = torch.tensor([-1e3] * 5 + [1e3] * 3, dtype=F64)
    logs = log_singular_values(relu, torch.randn(2, 8, generator=torch.Generator().manual_seed(0), dtype=F64))
    assert (logs.isinf().sum(-1) == 5).all() and logs[:, :3].isfinite().all()
    rows = {name: value for _, _, name, value in jacobian_rows(logs.unsqueeze(0)).per_replica()[0]}
    assert rows["jac_sv_zero"] == pytest.approx(5 / 8) and rows["jac_sv_min"] == 0.0
    sigmoid = MLP([8] * 30 + [2], "sigmoid", "xavier_normal", seed=0)
    logs = log_singular_values(sigmoid, torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    assert logs.isfinite().all() and logs.min() < -40


def test_jacobi_svd_of_a_graded_matrix_matches_500_digit_arithmetic():
    """diag(e^a) T with scales e^0 .. e^-1500 and a random T: beyond float64's range, so in log form only."""
    gen = torch.Generator().manual_seed(3)
    t = torch.randn(6, 6, generator=gen, dtype=F64)
    a = torch.tensor([0.0, -3.0, -40.0, -41.0, -900.0, -1500.0], dtype=F64)
    mpmath.mp.dps = 1500
    graded = mpmath.matrix([[mpmath.exp(a[i].item()) * t[i, j].item() for j in range(6)] for i in range(6)])
    reference = sorted((float(mpmath.log(s)) for s in mpmath.svd_r(graded, compute_uv=False)), reverse=True)
    measured = jacobi_log_svd(a, t).tolist()
    for value, exact in zip(measured, reference, strict=True):
        assert abs(value - exact) < 1e-9 * max(1.0, abs(exact))


def test_product_of_plain_matrices_in_any_order_of_application():
    """A_3 A_2 A_1 applied to the identity: the factors act in the order given."""
    gen = torch.Generator().manual_seed(4)
    mats = [torch.randn(5, 5, generator=gen, dtype=F64) for _ in range(3)]
    logs = product_log_singular_values([lambda u, m=m: m @ u for m in mats], torch.eye(5, dtype=F64))
    expected = torch.linalg.svdvals(mats[2] @ mats[1] @ mats[0]).log()
    torch.testing.assert_close(logs, expected, rtol=1e-10, atol=1e-10)
