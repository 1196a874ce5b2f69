"""Curvature from the hand-written backward: Hessian-vector products against autograd's (double backward through
the same forward, in float64) to 1e-6 relative, and the sharpness by Lanczos against the largest eigenvalue of the
exact Hessian to 1%, for MLPs (plain, residual with layer norm, batch norm) and both recurrent cells."""

import pytest
import torch

from gradlab import curvature
from gradlab.losses import LOSSES
from gradlab.mlp import MLP
from gradlab.rnn import RNN

CE = LOSSES["cross_entropy"]


def autograd_hvp(net, x: torch.Tensor, y: torch.Tensor, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    """H v by double backward through a float64 copy of the same forward pass."""
    ref = net.cast(torch.float64)
    params = ref.parameters()
    for p in params:
        p.requires_grad_(True)
    mean = CE.value(ref.trace(x.double()).logits, y).mean()
    grads = torch.autograd.grad(mean, params, create_graph=True)
    return list(torch.autograd.grad(sum((g * v.double()).sum() for g, v in zip(grads, vectors, strict=True)), params))


def exact_top_eigenvalue(net, x: torch.Tensor, y: torch.Tensor) -> float:
    """The largest eigenvalue of the whole Hessian, built column by column from autograd's H e_i."""
    shapes = [p.shape for p in net.parameters()]
    sizes = [s.numel() for s in shapes]
    columns = []
    for i in range(sum(sizes)):
        unit = torch.zeros(sum(sizes), dtype=torch.float64)
        unit[i] = 1
        pieces = [u.reshape(s) for u, s in zip(unit.split(sizes), shapes, strict=True)]
        columns.append(torch.cat([h.reshape(-1) for h in autograd_hvp(net, x, y, pieces)]))
    hessian = torch.stack(columns, dim=1)
    torch.testing.assert_close(hessian, hessian.T, rtol=1e-9, atol=1e-12)  # a Hessian: symmetric
    return float(torch.linalg.eigvalsh(hessian).max())


def mlp_case(arch: str, norm: str):
    net = MLP([3, 5, 5, 3], "tanh", "xavier_normal", seed=3, arch=arch, norm=norm, bias_std=0.2)
    gen = torch.Generator().manual_seed(4)
    return net, torch.randn(12, 3, generator=gen), torch.randint(0, 3, (12,), generator=gen)


def rnn_case(cell: str):
    net = RNN(2, 4, 3, cell=cell, activation="tanh", seed=2, recurrent_gain=1.2)
    gen = torch.Generator().manual_seed(6)
    return net, torch.randn(8, 5, 2, generator=gen), torch.randint(0, 3, (8,), generator=gen)


CASES = {"mlp plain": lambda: mlp_case("plain", "none"), "mlp residual layernorm": lambda: mlp_case("residual",
         "layernorm"), "mlp batchnorm": lambda: mlp_case("plain", "batchnorm"), "rnn vanilla": lambda: rnn_case(
         "vanilla"), "rnn lstm": lambda: rnn_case("lstm")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hessian_vector_products_match_autograds_to_one_part_in_a_million(case):
    net, x, y = CASES[case]()
    gen = torch.Generator().manual_seed(7)
    vectors = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in net.parameters()]
    before = [p.clone() for p in net.parameters()]
    running = [r.clone() for r in getattr(net, "running_means", []) if r is not None]
    got = curvature.hvp(net, CE, x, y, vectors)
    expected = autograd_hvp(net, x, y, vectors)
    error = sum(float((g - e).pow(2).sum()) for g, e in zip(got, expected, strict=True)) ** 0.5
    assert error <= 1e-6 * sum(float(e.pow(2).sum()) for e in expected) ** 0.5
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))  # left as it was
    assert all(torch.equal(r, k) for r, k in zip([r for r in getattr(net, "running_means", []) if r is not None],
                                                  running, strict=True))


@pytest.mark.parametrize("case", ["mlp plain", "mlp residual layernorm", "rnn lstm"])
def test_the_sharpness_by_lanczos_is_the_exact_hessians_top_eigenvalue_within_one_percent(case):
    net, x, y = CASES[case]()
    exact = exact_top_eigenvalue(net, x, y)
    assert curvature.top_eigenvalue(net, CE, x, y) == pytest.approx(exact, rel=0.01)


def test_the_sharpness_of_a_quadratic_is_its_curvature():
    """A depth-1 linear network under mse is quadratic in (W, b): for each output the Hessian is [x 1]^T [x 1] / B, so
    the sharpness is that matrix's top eigenvalue, to the finite differences' round-off."""
    net = MLP([4, 3], "linear", seed=0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=gen)
    design = torch.cat([x, torch.ones(20, 1, dtype=torch.float64)], dim=1)
    expected = float(torch.linalg.eigvalsh(design.T @ design / 20).max())
    assert curvature.top_eigenvalue(net, LOSSES["mse"], x, y) == pytest.approx(expected, rel=1e-6)
