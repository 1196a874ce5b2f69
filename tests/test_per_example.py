"""Per-example gradient norms from the hand-written backward pass against autograd, example by example, in float64:
every activation, every architecture and norm that keeps examples apart, replicas, and both recurrent cells and
readouts; batch norm, which couples the examples, is refused."""

import pytest
import torch

from gradlab.activations import ACTIVATIONS
from gradlab.mlp import MLP
from gradlab.rnn import RNN

F64 = torch.float64


def autograd_sq_norms(params: list[torch.Tensor], logits: torch.Tensor, dlogits: torch.Tensor,
                      examples: torch.Size) -> torch.Tensor:
    """||d <logits_b, dlogits_b> / d theta_k||^2 for every example b, indexed by `examples` ((B,) or (R, B): replica r's
    gradient is its own slice of each parameter), one autograd pass per example: (*examples, len(params))."""
    rows = []
    for flat in range(examples.numel()):
        at = tuple(torch.unravel_index(torch.tensor(flat), examples))
        at = tuple(int(i) for i in at)
        grads = torch.autograd.grad((logits[at] * dlogits[at]).sum(), params, retain_graph=True)
        own = [g[at[0]] if len(examples) == 2 else g for g in grads]
        rows.append(torch.stack([g.pow(2).sum() for g in own]))
    return torch.stack(rows).reshape(*examples, len(params))


def mlp_with_grad(arch: str, norm: str, activation: str, replicas: int = 1, sizes: tuple = (4, 6, 6, 6, 3)):
    net = MLP(list(sizes), activation, "xavier_normal", seed=2, replicas=replicas, dtype=F64, arch=arch,
              norm=norm, bias_std=0.3)
    net.weights = [w.clone().requires_grad_(True) for w in net.weights]
    net.biases = [b.clone().requires_grad_(True) for b in net.biases]
    gen = torch.Generator().manual_seed(5)
    net.norm_weights = [None if g is None else (g + 0.2 * torch.randn(g.shape, generator=gen, dtype=F64))
                        .requires_grad_(True) for g in net.norm_weights]
    net.norm_biases = [None if b is None else (b + 0.2 * torch.randn(b.shape, generator=gen, dtype=F64))
                       .requires_grad_(True) for b in net.norm_biases]
    lead = (replicas,) if replicas > 1 else ()
    return (net, torch.randn(*lead, 7, sizes[0], generator=gen, dtype=F64),
            torch.randn(*lead, 7, sizes[-1], generator=gen, dtype=F64))


def check_mlp(arch: str, norm: str, activation: str, replicas: int = 1) -> None:
    net, x, dlogits = mlp_with_grad(arch, norm, activation, replicas)
    net.forward(x)
    net.backward(dlogits)
    got = net.per_example_grad_sq_norms()
    expected = autograd_sq_norms(net.parameters(), net.last_trace.logits, dlogits, x.shape[:-1])
    assert got.shape == (*x.shape[:-1], len(net.parameters()))
    torch.testing.assert_close(got.detach(), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_per_example_norms_match_autograd_for_every_activation(activation):
    check_mlp("plain", "none", activation)


@pytest.mark.parametrize(("arch", "norm"), [("plain", "layernorm"), ("residual", "none"), ("residual", "layernorm")])
def test_mlp_per_example_norms_match_autograd_for_every_architecture_and_norm(arch, norm):
    check_mlp(arch, norm, "tanh")


def test_mlp_per_example_norms_of_replicas_are_each_replicas_own():
    check_mlp("residual", "layernorm", "relu", replicas=3)


def test_per_example_norms_bound_the_batch_gradient_and_equal_it_for_one_example():
    """A sanity check of what the norms are: the batch gradient is the sum of the per-example ones, so by the
    triangle inequality ||sum_b g_b|| <= sum_b ||g_b||, with equality for one example."""
    net, x, dlogits = mlp_with_grad("plain", "none", "tanh")
    grads = net.backprop(net.trace(x), dlogits).grads
    per = net.per_example_grad_sq_norms(net.trace(x), net.backprop(net.trace(x), dlogits))
    for k, g in enumerate(grads):
        assert float(g.detach().norm()) <= float(per[:, k].detach().sqrt().sum()) + 1e-12
    one = net.per_example_grad_sq_norms(net.trace(x[:1]), net.backprop(net.trace(x[:1]), dlogits[:1]))
    whole = net.backprop(net.trace(x[:1]), dlogits[:1]).grads
    torch.testing.assert_close(one[0].detach(), torch.stack([g.detach().pow(2).sum() for g in whole]))


def test_batch_norm_couples_the_examples_and_is_refused():
    net = MLP([4, 6, 3], "tanh", norm="batchnorm", dtype=F64)
    x = torch.randn(5, 4, dtype=F64)
    net.forward(x)
    net.backward(torch.randn(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="batchnorm.*couples the examples"):
        net.per_example_grad_sq_norms()


def rnn_with_grad(cell: str, readout: str, activation: str = "tanh", replicas: int = 1):
    net = RNN(3, 5, 2, cell=cell, activation=activation, init="xavier_normal", recurrent_gain=0.9, readout=readout,
              seed=1, replicas=replicas, dtype=F64)
    gen = torch.Generator().manual_seed(9)
    net.b = (net.b + 0.3 * torch.randn(net.b.shape, generator=gen, dtype=F64)).requires_grad_(True)
    net.c = (net.c + 0.3 * torch.randn(net.c.shape, generator=gen, dtype=F64)).requires_grad_(True)
    net.U, net.W, net.V = (p.clone().requires_grad_(True) for p in (net.U, net.W, net.V))
    lead = (replicas,) if replicas > 1 else ()
    x = torch.randn(*lead, 4, 6, 3, generator=gen, dtype=F64)
    out = (*lead, 4, 2) if readout == "last" else (*lead, 4, 6, 2)
    return net, x, torch.randn(out, generator=gen, dtype=F64)


@pytest.mark.parametrize("readout", ["last", "every"])
@pytest.mark.parametrize(("cell", "activation"), [("vanilla", "tanh"), ("vanilla", "relu"), ("lstm", "tanh")])
def test_rnn_per_example_norms_match_autograd_though_w_sums_over_time(cell, activation, readout):
    for replicas in (1, 3):
        net, x, dlogits = rnn_with_grad(cell, readout, activation, replicas)
        net.forward(x)
        net.backward(dlogits)
        got = net.per_example_grad_sq_norms()
        expected = autograd_sq_norms(net.parameters(), net.last_trace.logits, dlogits, x.shape[:-2])
        assert got.shape == (*x.shape[:-2], 5)
        torch.testing.assert_close(got.detach(), expected, rtol=1e-10, atol=1e-14)


def explicit_per_example_grads(net: MLP, x: torch.Tensor, dlogits: torch.Tensor) -> torch.Tensor:
    """Every example's whole gradient, flattened, (B, n_parameters in all), by autograd."""
    logits = net.trace(x).logits
    return torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        (logits[b] * dlogits[b]).sum(), net.parameters(), retain_graph=True)]) for b in range(len(x))])


def noise_statistics(example_sq_sum: torch.Tensor, mean_grad_sq_norm: torch.Tensor, batch: int) -> dict:
    """gradlab.per_example.noise_rows for one block of parameters, from sum_b ||g_b||^2 of the examples' own gradients
    and the batch mean's ||G||^2: the whole network's row of each name."""
    from gradlab.measurement import concat
    from gradlab.network import Role
    from gradlab.per_example import noise_rows, noise_terms

    sums = (example_sq_sum / batch**2).reshape(1)  # noise_terms takes the sums of the batch-mean loss's g_b / B
    terms = torch.cat(noise_terms([sums], mean_grad_sq_norm.sqrt().reshape(1))).double()
    rows = noise_rows([Role("weight", 1)], terms.reshape(-1, 1), batch)
    return {name: torch.tensor(value, dtype=F64) for layer, _, name, value in concat(rows).per_replica()[0]
            if layer is None}


def test_noise_statistics_are_the_definitions_on_explicit_per_example_gradients():
    net, x, dlogits = mlp_with_grad("plain", "layernorm", "tanh")
    g = explicit_per_example_grads(net, x, dlogits)  # (B, P)
    batch, mean = len(g), g.mean(0)
    trace = (g - mean).pow(2).sum() / (batch - 1)  # the unbiased sample variance, summed over coordinates
    per = net.per_example_grad_sq_norms(net.trace(x), net.backprop(net.trace(x), dlogits)).detach()
    stats = noise_statistics(per.sum(), mean.pow(2).sum().detach(), batch)
    torch.testing.assert_close(stats["grad_noise_trace"], trace.detach())
    torch.testing.assert_close(stats["gsnr"], (mean.pow(2).sum() / (trace / batch)).detach())
    torch.testing.assert_close(stats["noise_scale"], (trace / (mean.pow(2).sum() - trace / batch)).detach())
    torch.testing.assert_close(stats["norm_test"], (trace / batch / mean.pow(2).sum()).sqrt().detach())


def test_the_per_example_noise_scale_estimates_what_mccandlishs_two_batch_estimator_does():
    """McCandlish et al. 2018 (appendix A): |G|^2 and tr(Sigma) from the squared norms of two batch gradients, of sizes
    b and B; the per-example estimator gets both from one batch. Over 400 batches drawn with replacement from 2,000
    examples of a fixed network, each (numerator and denominator averaged apart, as the paper does) lands within 10%
    of the population's B_simple = tr(Sigma) / |G|^2."""
    from gradlab.losses import LOSSES

    gen = torch.Generator().manual_seed(0)
    net = MLP([2, 16, 16, 2], "tanh", seed=0, dtype=F64)
    x = torch.randn(2000, 2, generator=gen, dtype=F64)
    y = ((x[:, 0] * x[:, 1] + 0.5 * torch.randn(2000, generator=gen, dtype=F64)) > 0).long()
    _, dlogits = LOSSES["cross_entropy"].value_and_grad(net.trace(x).logits, y)  # d loss_b / d logits_b

    def batch_terms(idx):
        trace, back = net.trace(x[idx]), None
        back = net.backprop(trace, dlogits[idx] / len(idx))  # the batch-mean gradient G
        mean_sq = torch.stack([g.pow(2).sum() for g in back.grads]).sum()
        return net.per_example_grad_sq_norms(trace, back).sum(-1) * len(idx) ** 2, mean_sq

    everyone, full_sq = batch_terms(torch.arange(2000))
    population = (everyone.mean() - full_sq) / full_sq  # tr(Sigma) / |G|^2 over the 2,000 examples themselves
    small, big, traces, signals, small_sq, big_sq = 32, 512, [], [], [], []
    for _ in range(400):
        per, mean_sq = batch_terms(torch.randint(0, 2000, (small,), generator=gen))
        stats = noise_statistics(per.sum(), mean_sq, small)
        traces.append(stats["grad_noise_trace"])
        signals.append(mean_sq - stats["grad_noise_trace"] / small)
        small_sq.append(mean_sq)
        big_sq.append(batch_terms(torch.randint(0, 2000, (big,), generator=gen))[1])
    per_example = torch.stack(traces).mean() / torch.stack(signals).mean()
    small_sq, big_sq = torch.stack(small_sq).mean(), torch.stack(big_sq).mean()
    g2 = (big * big_sq - small * small_sq) / (big - small)  # McCandlish's unbiased |G|^2
    s = (small_sq - big_sq) / (1 / small - 1 / big)  # and tr(Sigma)
    assert float(per_example / population) == pytest.approx(1, abs=0.1)
    assert float((s / g2) / population) == pytest.approx(1, abs=0.1)


@pytest.mark.parametrize(("arch", "norm", "sizes"), [
    ("plain", "none", (6, 6, 6, 6, 3)),  # the inputs' norms come from the stack of the hidden outputs (gradlab.stats)
    ("plain", "layernorm", (4, 6, 6, 6, 3)),  # x has another width: every input afresh
    ("residual", "layernorm", (4, 6, 6, 6, 3)),
])
def test_a_measured_steps_noise_rows_are_the_statistics_of_its_own_per_example_gradients(arch, norm, sizes):
    """The loop's rows at a measured step (net.measure, backprop given dlogits / B) against explicit per-example
    gradients of each example's own loss: per layer (W^l, b^l and its norm's gamma, beta) and for the whole network;
    and per_example.noise_block, the path of a family without the MLP's shared norms, gives the same rows."""
    from gradlab.losses import LOSSES
    from gradlab.measurement import concat
    from gradlab.optim import SGD
    from gradlab.per_example import NOISE_NAMES, noise_block
    from gradlab.stats import hidden_and_inputs
    from gradlab.train import gradients

    net, x, _ = mlp_with_grad(arch, norm, "tanh", sizes=sizes)
    y = torch.randint(0, 3, (7,), generator=torch.Generator().manual_seed(2))
    g = gradients(net, LOSSES["cross_entropy"], x, y)
    shared = hidden_and_inputs(net, g.trace, inputs_wanted=True)[1] is not None
    assert shared == (arch == "plain" and sizes[0] == sizes[1])  # the cases cover both paths
    measured = net.measure(g.trace, g.back, g.grad_norms, SGD(net.parameters(), lr=0.1).updates(g.back.grads))
    rows = {(layer, name): value for layer, _, name, value in measured.per_replica()[0] if name in NOISE_NAMES}
    generic = {(layer, name): value for layer, _, name, value in
               concat(noise_block(net, g.trace, g.back, g.grad_norms)).per_replica()[0]}
    assert rows.keys() == generic.keys() and len(rows) == 4 * (net.depth + 1)
    _, dlogits = LOSSES["cross_entropy"].value_and_grad(net.trace(x).logits, y)  # d loss_b / d logits_b
    explicit = explicit_per_example_grads(net, x, dlogits.detach())  # (B, all coordinates)
    sizes = [p.numel() for p in net.parameters()]
    owner = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    for layer in [*range(1, net.depth + 1), None]:
        mine = [k for k, role in enumerate(net.roles()) if layer is None or role.layer == layer]
        own = explicit[:, torch.isin(owner, torch.tensor(mine))].detach()
        mean, batch = own.mean(0), len(own)
        trace = (own - mean).pow(2).sum() / (batch - 1)
        gsnr = mean.pow(2).sum() / (trace / batch)
        expected = {"grad_noise_trace": trace, "gsnr": gsnr, "noise_scale": trace / (mean.pow(2).sum() - trace / batch),
                    "norm_test": gsnr.rsqrt()}
        for name in NOISE_NAMES:
            assert rows[(layer, name)] == pytest.approx(float(expected[name]), rel=1e-9), (layer, name)
            assert generic[(layer, name)] == pytest.approx(float(expected[name]), rel=1e-9), (layer, name)


def test_noise_rows_are_left_out_where_batch_norm_couples_the_examples_and_kept_for_an_rnn():
    from gradlab.losses import LOSSES
    from gradlab.per_example import noise_block
    from gradlab.train import gradients

    net = MLP([4, 6, 3], "tanh", norm="batchnorm")
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    g = gradients(net, LOSSES["cross_entropy"], x, y)
    assert noise_block(net, g.trace, g.back, g.grad_norms).keys == []
    rnn, x, _ = rnn_with_grad("lstm", "last", replicas=3)
    g = gradients(rnn, LOSSES["cross_entropy"], x.detach(), torch.randint(0, 2, (3, 4)))
    rows = noise_block(rnn, g.trace, g.back, g.grad_norms)
    assert rows.values.shape == (8, 3) and {key[0] for key in rows.keys} == {1, None}  # U, W, b; and all five
    assert torch.isfinite(rows.values).all()
