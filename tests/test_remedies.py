"""Residual networks and layer and batch norm: every hand-written backward against autograd on the definitions,
batch norm's running statistics against torch.nn.BatchNorm1d. (Adam against torch.optim.Adam sits beside SGD's
check in test_mlp_gradients.py.)"""

import zlib

import pytest
import torch
import torch.nn.functional as F

from gradlab.activations import ACTIVATIONS
from gradlab.architecture import ARCHS
from gradlab.layers import NORM_CHOICES
from gradlab.losses import LOSSES
from gradlab.mlp import MLP
from gradlab.optim import Step, tensor_norms

TOLERANCE = 1e-10
CE = LOSSES["cross_entropy"]


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return (torch.linalg.vector_norm(actual - expected) / max(torch.linalg.vector_norm(expected), 1e-300)).item()


def assert_matches(grads: list[torch.Tensor], expected: list[torch.Tensor], what: str) -> None:
    """Each gradient within TOLERANCE of autograd's, relative; one that is zero by construction (a bias before
    batch norm, whose mean the norm removes) must be zero to round-off of the largest gradient."""
    scale = max(torch.linalg.vector_norm(e).item() for e in expected)
    for i, (grad, ref) in enumerate(zip(grads, expected, strict=True)):
        if torch.linalg.vector_norm(ref) < 1e-12 * scale:
            assert torch.linalg.vector_norm(grad) < 1e-12 * scale, f"{what} {i}: should vanish"
        else:
            assert rel_err(grad, ref) < TOLERANCE, f"{what} {i}"


def make_net(arch: str, norm: str, activation: str, depth: int, replicas: int = 1, width: int = 6, batch: int = 5):
    """A float64 net with random nonzero biases, gammas and betas, a batch and its targets; seeded by the case."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{arch}/{norm}/{activation}/{depth}/{replicas}".encode()))
    net = MLP([4, *[width] * (depth - 1), 3], activation, "xavier_normal", seed=depth, replicas=replicas,
              dtype=torch.float64, arch=arch, norm=norm, residual_scale=0.7)
    lead = (replicas,) if replicas > 1 else ()
    net.biases = [0.5 * torch.randn(b.shape, generator=gen, dtype=torch.float64) for b in net.biases]
    net.norm_weights = [None if g is None else 1 + 0.3 * torch.randn(g.shape, generator=gen, dtype=torch.float64)
                        for g in net.norm_weights]
    net.norm_biases = [None if b is None else 0.3 * torch.randn(b.shape, generator=gen, dtype=torch.float64)
                       for b in net.norm_biases]
    x = torch.randn(*lead, batch, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (*lead, batch), generator=gen)
    return net, x, y


def reference_forward(net: MLP, x: torch.Tensor, params: dict, r: int | None):
    """The definitions, in plain torch with torch's own norms, on replica r's parameters; returns (logits, [z^l])."""
    pick = (lambda t: t) if r is None else (lambda t: None if t is None else t[r])
    weights, biases = [pick(w) for w in params["weights"]], [pick(b) for b in params["biases"]]
    gammas, betas = [pick(g) for g in params["gammas"]], [pick(b) for b in params["betas"]]
    phi, alpha = net.activation.fn, net.residual_scale

    def norm(l: int, v: torch.Tensor) -> torch.Tensor:
        if gammas[l - 1] is None:
            return v
        if net.norm_name == "layernorm":
            return F.layer_norm(v, v.shape[-1:], gammas[l - 1], betas[l - 1], eps=1e-5)
        return F.batch_norm(v, None, None, gammas[l - 1], betas[l - 1], training=True, eps=1e-5)

    zs, h = [], x
    for l in range(1, net.depth + 1):
        if net.arch == "plain" or l == 1:
            z = h @ weights[l - 1] + biases[l - 1]
        else:
            z = phi(norm(l, h)) @ weights[l - 1] + biases[l - 1]
        z.retain_grad()
        zs.append(z)
        if l == net.depth:
            return z, zs
        if net.arch == "plain":
            h = phi(norm(l, z))
        else:
            h = z if l == 1 else h + alpha * z


def autograd_reference(net: MLP, x: torch.Tensor, y: torch.Tensor, r: int | None = None):
    """Gradients of net.parameters() (in its order) and dL/dz^l by autograd, for replica r (None: unbatched)."""
    leaf = lambda ts: [None if t is None else t.clone().requires_grad_(True) for t in ts]  # noqa: E731
    params = {"weights": leaf(net.weights), "biases": leaf(net.biases), "gammas": leaf(net.norm_weights),
              "betas": leaf(net.norm_biases)}
    xr, yr = (x, y) if r is None else (x[r], y[r])
    logits, zs = reference_forward(net, xr, params, r)
    CE.value(logits, yr).mean().backward()
    grads = [p.grad for key in ("weights", "biases", "gammas", "betas") for p in params[key] if p is not None]
    return [g if r is None else g[r] for g in grads], [z.grad for z in zs]


def manual_backward(net: MLP, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    return net.backward(CE.value_and_grad(net.forward(x), y)[1] / y.shape[-1])


@pytest.mark.parametrize("depth", [2, 3, 5])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("norm", NORM_CHOICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_backward_matches_autograd_for_every_arch_norm_and_activation(arch, norm, activation, depth):
    net, x, y = make_net(arch, norm, activation, depth)
    grads = manual_backward(net, x, y)
    expected, expected_deltas = autograd_reference(net, x, y)
    assert [g.shape for g in grads] == [p.shape for p in net.parameters()] == [g.shape for g in expected]
    assert_matches(grads, expected, "parameter")
    assert_matches(net.deltas, expected_deltas, "dL/dz of layer index")


@pytest.mark.parametrize("norm", NORM_CHOICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_replica_batched_backward_matches_autograd_per_replica(arch, norm):
    net, x, y = make_net(arch, norm, "tanh", depth=4, replicas=3)
    grads = manual_backward(net, x, y)
    for r in range(3):
        expected, _ = autograd_reference(net, x, y, r)
        assert_matches([g[r] for g in grads], expected, f"replica {r}, parameter")


@pytest.mark.parametrize("arch", ARCHS)
def test_parameters_by_role(arch):
    net = MLP([4, 6, 6, 6, 3], "relu", arch=arch, norm="layernorm")
    normed = [l for l in range(1, 5) if net.norm_weights[l - 1] is not None]
    assert normed == ([1, 2, 3] if arch == "plain" else [2, 3, 4])
    gammas = [g for g in net.norm_weights if g is not None]
    assert all(torch.equal(g, torch.ones(6)) for g in gammas)
    assert net.parameters() == [*net.weights, *net.biases, *gammas, *[b for b in net.norm_biases if b is not None]]


def test_batchnorm_running_statistics_match_torch_and_evaluation_uses_them():
    net, x, _ = make_net("plain", "batchnorm", "tanh", depth=2, width=5, batch=8)
    reference = torch.nn.BatchNorm1d(5, eps=1e-5, momentum=0.1, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(net.norm_weights[0])
        reference.bias.copy_(net.norm_biases[0])
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        batch = 2.0 + 3.0 * torch.randn(8, 4, generator=gen, dtype=torch.float64)
        net.forward(batch)
        reference(net.last_trace.layers[0].z)  # the same pre-activations, in training mode
    torch.testing.assert_close(net.running_means[0], reference.running_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(net.running_vars[0], reference.running_var, rtol=1e-12, atol=1e-14)
    reference.eval()
    z = x @ net.weights[0] + net.biases[0]
    expected = torch.tanh(reference(z)) @ net.weights[1] + net.biases[1]
    torch.testing.assert_close(net.infer(x), expected, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(net.infer(x), net.forward(x))  # training mode uses the batch's statistics


def test_residual_and_norm_statistics_match_direct_computation():
    net, x, y = make_net("residual", "layernorm", "relu", depth=4)
    trace = net.trace(x)
    back = net.backprop(trace, CE.value_and_grad(trace.logits, y)[1] / y.shape[-1])
    expected, _ = autograd_reference(net, x, y)
    measured = net.measure(trace, back, tensor_norms(back.grads, False), Step(back.grads, 1.0))
    table = {(l, name): v for l, _, name, v in measured.per_replica()[0]}
    gammas = expected[8:11]  # after 4 weights and 4 biases: gamma of layers 2, 3, 4
    for l, d_gamma in zip([2, 3, 4], gammas, strict=True):
        assert table[(l, "norm_weight_grad_norm")] == pytest.approx(d_gamma.norm().item(), rel=TOLERANCE)
    for l in (1, 2, 3):
        stream = net.hidden_outputs(trace)[l - 1]
        assert table[(l, "avg_var")] == pytest.approx(stream.var(0, correction=0).mean().item(), rel=TOLERANCE)
        assert table[(l, "avg_sq_mean")] == pytest.approx(stream.mean(0).pow(2).mean().item(), rel=TOLERANCE)
    for l in (2, 3):
        branch = net.hidden_outputs(trace)[l - 1] - net.hidden_outputs(trace)[l - 2]  # alpha z^l
        assert table[(l, "branch_avg_var")] == pytest.approx(branch.var(0, correction=0).mean().item(), rel=1e-8)
    assert {l for l, name in table if name == "saturation"} == {2, 3, 4}  # where phi is applied
    assert (1, "branch_avg_var") not in table and (4, "avg_var") not in table
