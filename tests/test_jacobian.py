"""The input-output Jacobian J = d h^{depth-1} / d x from the hand-written backward: against torch.func.jacrev for
every activation, arch and norm, and against two closed forms (orthogonal linear nets; Gaussian linear nets)."""

import json
import math
import zlib
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import compose_config
from gradlab.activations import ACTIVATIONS
from gradlab.architecture import ARCHS
from gradlab.experiment import Job, prepare, run_job
from gradlab.jacobian import jacobian_rows
from gradlab.layers import NORM_CHOICES
from gradlab.mlp import MLP


def make_net(arch: str, norm: str, activation: str, depth: int = 4, replicas: int = 1) -> MLP:
    """A float64 net with nonzero biases, gammas, betas and (batch norm) running statistics."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{arch}/{norm}/{activation}/{replicas}".encode()))
    net = MLP([5, 6, 6, 6, 3][: depth + 1] if depth <= 4 else [5, *[6] * (depth - 1), 3], activation,
              "xavier_normal", seed=1, replicas=replicas, dtype=torch.float64, arch=arch, norm=norm, residual_scale=0.6)
    noisy = lambda ts, base, scale: [None if t is None else base + scale * torch.randn(t.shape, generator=gen,  # noqa: E731
                                                                                       dtype=torch.float64)
                                     for t in ts]
    net.biases = noisy(net.biases, 0.0, 0.5)
    net.norm_weights, net.norm_biases = noisy(net.norm_weights, 1.0, 0.3), noisy(net.norm_biases, 0.0, 0.3)
    net.running_means = noisy(net.running_means, 0.0, 0.5)
    net.running_vars = [None if v is None else 0.5 + torch.rand(v.shape, generator=gen, dtype=torch.float64)
                        for v in net.running_vars]
    return net


def last_hidden(net: MLP, x: torch.Tensor, r: int | None = None) -> torch.Tensor:
    """h^{depth-1} of one example by the definitions, in evaluation mode, with torch's own norms."""
    pick = (lambda t: t) if r is None else (lambda t: None if t is None else t[r])
    phi, alpha = net.activation.fn, net.residual_scale

    def norm(l: int, v: torch.Tensor) -> torch.Tensor:
        gamma, beta = pick(net.norm_weights[l - 1]), pick(net.norm_biases[l - 1])
        if gamma is None:
            return v
        if net.norm_name == "layernorm":
            return F.layer_norm(v, v.shape[-1:], gamma, beta, eps=1e-5)
        mean, var = pick(net.running_means[l - 1]), pick(net.running_vars[l - 1])
        return F.batch_norm(v[None], mean, var, gamma, beta, training=False, eps=1e-5)[0]

    h = x
    for l in range(1, net.depth):
        w, b = pick(net.weights[l - 1]), pick(net.biases[l - 1])
        if net.arch == "plain":
            h = phi(norm(l, h @ w + b))
        else:
            h = h @ w + b if l == 1 else h + alpha * (phi(norm(l, h)) @ w + b)
    return h


def jacrev_reference(net: MLP, x: torch.Tensor, r: int | None = None) -> torch.Tensor:
    return torch.stack([torch.func.jacrev(lambda v: last_hidden(net, v, r))(example) for example in x])


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("norm", NORM_CHOICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_jacobian_matches_jacrev_for_every_arch_norm_and_activation(arch, norm, activation):
    net = make_net(arch, norm, activation)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    jacobian = net.input_jacobian(x)
    expected = jacrev_reference(net, x)
    assert jacobian.shape == expected.shape == (3, 6, 5)
    torch.testing.assert_close(jacobian, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_jacobian_of_replicas_is_each_replicas_own(arch):
    net = make_net(arch, "layernorm", "tanh", replicas=2)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    jacobian = net.input_jacobian(x)  # inputs shared by the replicas
    assert jacobian.shape == (2, 3, 6, 5)
    for r in range(2):
        torch.testing.assert_close(jacobian[r], jacrev_reference(net, x, r), rtol=1e-10, atol=1e-12)


def test_depth_one_has_no_jacobian():
    with pytest.raises(ValueError, match="no hidden layer"):
        MLP([4, 3]).input_jacobian(torch.zeros(2, 4))


def test_orthogonal_linear_network_is_an_isometry():
    net = MLP([16] * 6, "linear", "orthogonal", seed=3, dtype=torch.float64)
    singular_values = torch.linalg.svdvals(net.input_jacobian(torch.randn(4, 16, dtype=torch.float64)))
    torch.testing.assert_close(singular_values, torch.ones(4, 16, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def expected_log_abs_det(n: int, sigma_w2: float) -> float:
    """E ln|det W| for n x n N(0, sigma_w2 / n) entries: (n/2) ln(2 sigma_w2 / n) + (1/2) sum_k psi(k/2)."""
    return n / 2 * math.log(2 * sigma_w2 / n) + 0.5 * sum(torch.special.digamma(torch.tensor(k / 2)).item()
                                                         for k in range(1, n + 1))


def test_gaussian_linear_network_mean_log_singular_value_is_a_sum_of_digammas():
    """J = W^1 ... W^{depth-1} for linear layers, so mean ln s = (1/N) sum_l ln|det W^l|, whose expectation is
    a sum of digamma terms (Bartlett's decomposition); averaged over 40 seeds, within 4 standard errors."""
    n, hidden_layers, seeds = 24, 4, 40
    means = []
    for seed in range(seeds):
        net = MLP([n] * (hidden_layers + 2), "linear", "lecun_normal", seed=seed, dtype=torch.float64)
        singular_values = torch.linalg.svdvals(net.input_jacobian(torch.zeros(1, n, dtype=torch.float64)))
        means.append(singular_values.log().mean().item())
    expected = hidden_layers * expected_log_abs_det(n, sigma_w2=1.0) / n
    measured = torch.tensor(means)
    standard_error = measured.std().item() / math.sqrt(seeds)
    assert abs(measured.mean().item() - expected) < 4 * standard_error
    assert standard_error < 0.05  # the check has teeth: -1/2 per layer is far from 0


def test_jacobian_rows_follow_their_definitions():
    spectra = torch.tensor([[[4.0, 1.0, 0.0], [2.0, 0.5, 0.25]]], dtype=torch.float64)  # one replica, 2 examples
    rows = {name: value for _, _, name, value in jacobian_rows(spectra.log()).per_replica()[0]}  # ln 0 = -inf
    nonzero_logs = [math.log(v) for v in (4.0, 1.0, 2.0, 0.5, 0.25)]
    mean = sum(nonzero_logs) / 5
    assert rows["jac_sv_max"] == 4.0 and rows["jac_sv_min"] == 0.0
    assert rows["jac_log_sv_mean"] == pytest.approx(mean, rel=1e-12)
    assert rows["jac_log_sv_std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in nonzero_logs) / 5))
    assert rows["jac_isometry"] == pytest.approx(3 / 6) and rows["jac_sv_zero"] == pytest.approx(1 / 6)


def run_record(tmp_path: Path, *overrides: str) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    cfg = compose_config("depth=3", "width=8", "epochs=2", "logger.mode=disabled", *overrides)
    run_job(cfg, Job(tmp_path, "jacobian"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    spectra_path = tmp_path / "jacobian.parquet"
    spectra = pd.read_parquet(spectra_path) if spectra_path.exists() else None
    return summary, pd.read_parquet(tmp_path / "metrics.parquet"), spectra


def test_run_records_the_spectrum_of_fixed_test_examples_at_init_and_each_epoch(tmp_path: Path):
    summary, metrics, spectra = run_record(tmp_path, "jacobian.examples=5", "activation=tanh",
                                           "jacobian.every_epoch=true")
    assert summary["jacobian"]["examples"] == 5 and summary["jacobian"]["shape"] == [8, 64]
    epoch_ends = sorted(metrics.query("name == 'test_loss'").step.unique())
    assert sorted(metrics.query("name == 'jac_log_sv_mean'").step) == epoch_ends == sorted(spectra.step.unique())
    assert len(spectra) == len(epoch_ends) * 5 * 8  # min(width, n_in) = 8 singular values per example
    cfg = compose_config("depth=3", "width=8", "activation=tanh")
    at_init = prepare(cfg)  # the same seed: the network as it was at step 0
    x = at_init.split.x_test[:5].double()
    net = at_init.net
    net.weights, net.biases = [w.double() for w in net.weights], [b.double() for b in net.biases]
    expected = torch.linalg.svdvals(jacrev_reference(net, x))  # (5, 8), largest first
    assert (spectra.log_singular_value.map(math.exp) == spectra.singular_value).all()  # ln s beside s
    recorded = spectra.query("step == 0").sort_values(["example", "index"]).singular_value.to_numpy()
    torch.testing.assert_close(torch.tensor(recorded).reshape(5, 8), expected, rtol=1e-4, atol=1e-6)


def test_every_epoch_false_keeps_only_step_0(tmp_path: Path):
    _, metrics, spectra = run_record(tmp_path, "jacobian.examples=3", "jacobian.every_epoch=false")
    assert set(spectra.step) == {0} and set(metrics.query("name == 'jac_isometry'").step) == {0}


@pytest.mark.parametrize(("overrides", "why"), [(("depth=1",), "no hidden layer"), (("jacobian.examples=0",), "=0")])
def test_no_jacobian_is_said_in_the_record(tmp_path: Path, overrides, why):
    summary, metrics, spectra = run_record(tmp_path, *overrides)
    assert summary["status"] == "completed" and why in summary["jacobian"]["why_none"]
    assert spectra is None and not metrics.name.str.startswith("jac_").any()
