"""The hand-written backward pass, the per-layer stats built on it, and the optimizer, against torch."""

import zlib

import pytest
import torch

from gradlab.activations import ACTIVATIONS
from gradlab.inits import INITS
from gradlab.losses import LOSSES
from gradlab.mlp import MLP
from gradlab.optim import SGD, Adam, apply, clip_by_global_norm, global_norm, tensor_norms
from gradlab.per_example import NOISE_NAMES
from gradlab.stats import LAYER_METRICS

DEPTHS = [1, 2, 3, 4, 5]
TOLERANCE = 1e-10
ACT_METRICS = {"act_mean", "act_std", "avg_sq_mean", "avg_var", "saturation"}


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, with a floor so an all-zero reference still compares."""
    assert actual.shape == expected.shape
    return (torch.linalg.vector_norm(actual - expected) / max(torch.linalg.vector_norm(expected), 1e-300)).item()


def make_case(activation: str, init: str, loss_name: str, depth: int, batch: int = 5):
    """A float64 MLP with random widths and nonzero biases, a batch and its targets; seeded by the case."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{activation}/{init}/{loss_name}/{depth}".encode()))
    loss = LOSSES[loss_name]
    n_classes = loss.n_classes or int(torch.randint(2, 6, (1,), generator=gen))
    widths = torch.randint(2, 8, (depth,), generator=gen).tolist()
    sizes = [*widths, loss.out_dim(n_classes)]
    seed = int(torch.randint(2**31, (1,), generator=gen))
    net = MLP(sizes, activation=activation, init=init, dtype=torch.float64, seed=seed)
    # Nonzero biases, so every layer's b enters the forward pass for real.
    net.biases = [0.5 * torch.randn(b.shape, generator=gen, dtype=torch.float64) for b in net.biases]
    x = torch.randn(batch, sizes[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, n_classes, (batch,), generator=gen)
    return net, x, y


def autograd_reference(net: MLP, x: torch.Tensor, y: torch.Tensor, loss_name: str):
    """The same forward on leaf copies of net's parameters; autograd of the batch-mean loss.

    Returns ([(dW, db)], [dL/dz] per layer, [h^l] per hidden layer). The registry's fn is used, so
    this compares backprop, not activation definitions.
    """
    weights = [w.clone().requires_grad_(True) for w in net.weights]
    biases = [b.clone().requires_grad_(True) for b in net.biases]
    h, preacts, hiddens = x, [], []
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        z = h @ w + b
        z.retain_grad()
        preacts.append(z)
        if layer < len(weights):
            h = net.activation.fn(z)
            hiddens.append(h.detach())
        else:
            h = z
    LOSSES[loss_name].value(h, y).mean().backward()
    grads = [(w.grad, b.grad) for w, b in zip(weights, biases, strict=True)]
    return grads, [z.grad for z in preacts], hiddens


def manual_backward(net: MLP, x: torch.Tensor, y: torch.Tensor, loss_name: str):
    _, dlogits = LOSSES[loss_name].value_and_grad(net.forward(x), y)  # as a training step takes it
    return net.backward(dlogits / len(y))


ALL_CASES = pytest.mark.parametrize(
    ("activation", "init", "loss_name", "depth"),
    [(a, i, n, d) for a in sorted(ACTIVATIONS) for i in sorted(INITS) for n in sorted(LOSSES) for d in DEPTHS],
)


@ALL_CASES
def test_mlp_backward_matches_autograd(activation, init, loss_name, depth):
    net, x, y = make_case(activation, init, loss_name, depth)
    expected_grads, _, _ = autograd_reference(net, x, y, loss_name)
    grads = manual_backward(net, x, y, loss_name)
    assert len(grads) == 2 * depth == len(net.parameters())  # each W^l, then each b^l
    pairs = list(zip(grads[:depth], grads[depth:], strict=True))
    for layer, ((dW, db), (ref_dW, ref_db)) in enumerate(zip(pairs, expected_grads, strict=True), start=1):
        assert ref_dW.norm() > 0 or activation == "relu", "degenerate case: no gradient reaches W"
        assert rel_err(dW, ref_dW) < TOLERANCE, f"dW^{layer}"
        assert rel_err(db, ref_db) < TOLERANCE, f"db^{layer}"


@pytest.mark.parametrize("activation", sorted(a for a, act in ACTIVATIONS.items() if act.grad_from_output))
@pytest.mark.parametrize("depth", [2, 4])
def test_mlp_backward_with_phi_slope_from_u_also_matches_autograd(activation, depth):
    # The network takes phi' from phi's output where it can; the path from u must stay exact too.
    net, x, y = make_case(activation, "xavier_uniform", "cross_entropy", depth)
    net.activation = net.activation._replace(grad_from_output=None)
    expected_grads, _, _ = autograd_reference(net, x, y, "cross_entropy")
    grads = manual_backward(net, x, y, "cross_entropy")
    for layer, (dW, (ref_dW, _)) in enumerate(zip(grads[:depth], expected_grads, strict=True), start=1):
        assert rel_err(dW, ref_dW) < TOLERANCE, f"dW^{layer}"


@ALL_CASES
def test_mlp_deltas_match_autograd_dloss_dz(activation, init, loss_name, depth):
    net, x, y = make_case(activation, init, loss_name, depth)
    _, expected_deltas, _ = autograd_reference(net, x, y, loss_name)
    manual_backward(net, x, y, loss_name)
    assert len(net.deltas) == depth
    for layer, (delta, ref_delta) in enumerate(zip(net.deltas, expected_deltas, strict=True), start=1):
        assert rel_err(delta, ref_delta) < TOLERANCE, f"dL/dz^{layer}"


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_forward_and_infer_give_the_same_logits(activation):
    net, x, _ = make_case(activation, "xavier_normal", "cross_entropy", depth=3)
    torch.testing.assert_close(net.forward(x), net.infer(x), rtol=0, atol=0)


def test_backward_before_forward_is_rejected():
    net = MLP([3, 2], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(torch.zeros(1, 2, dtype=torch.float64))


def per_example_delta_rms(net: MLP, x: torch.Tensor, y: torch.Tensor, loss_name: str) -> list[float]:
    """sqrt(mean_b ||d loss_b / d z^l_b||^2) per layer, one autograd pass per example."""
    squares = torch.zeros(net.depth, dtype=torch.float64)
    for b in range(len(x)):
        # A batch of one: its mean loss is loss_b, its dL/dz is d loss_b / d z_b.
        _, deltas, _ = autograd_reference(net, x[b : b + 1], y[b : b + 1], loss_name)
        squares += torch.stack([d.pow(2).sum() for d in deltas])
    return (squares / len(x)).sqrt().tolist()


def measure(net: MLP, x: torch.Tensor, y: torch.Tensor, loss_name: str, lr: float):
    """The network's statistics for a first momentum-free SGD step of size lr."""
    trace = net.trace(x)
    back = net.backprop(trace, LOSSES[loss_name].value_and_grad(trace.logits, y)[1] / y.shape[-1])
    updates = SGD(net.parameters(), lr).updates(back.grads)
    return net.measure(trace, back, tensor_norms(back.grads, net.batched), updates)


def rows_by_key(measured) -> dict[tuple[int, str], float]:
    rows = measured.per_replica()[0]
    assert all(time is None for _, time, _, _ in rows)  # an MLP's rows are keyed by layer alone
    table = {(layer, name): value for layer, _, name, value in rows}
    assert len(table) == len(rows), "a (layer, name) pair appears twice"
    return table


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_delta_rms_is_the_per_example_rms_of_dloss_dz(activation, loss_name):
    net, x, y = make_case(activation, "kaiming_normal", loss_name, depth=4, batch=7)
    expected = per_example_delta_rms(net, x, y, loss_name)
    table = rows_by_key(measure(net, x, y, loss_name, lr=0.1))
    for layer in range(1, net.depth + 1):
        assert table[(layer, "delta_rms")] == pytest.approx(expected[layer - 1], rel=TOLERANCE)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "linear"])
def test_layer_stats_rows_match_direct_computation(activation, depth):
    net, x, y = make_case(activation, "xavier_uniform", "cross_entropy", depth)
    ref_grads, _, hiddens = autograd_reference(net, x, y, "cross_entropy")
    lr = 0.3
    table = rows_by_key(measure(net, x, y, "cross_entropy", lr))
    grad_metrics = set(LAYER_METRICS) - ACT_METRICS - {"norm_weight_grad_norm", "branch_avg_var"}
    expected_keys = {(layer, name) for layer in range(1, depth + 1) for name in grad_metrics}
    expected_keys |= {(layer, name) for layer in range(1, depth) for name in ACT_METRICS}
    expected_keys |= {(layer, name) for layer in [*range(1, depth + 1), None] for name in NOISE_NAMES}  # per_example
    assert set(table) == expected_keys
    for layer, ((ref_dW, ref_db), w) in enumerate(zip(ref_grads, net.weights, strict=True), start=1):
        assert table[(layer, "grad_norm")] == pytest.approx(ref_dW.norm().item(), rel=TOLERANCE)
        assert table[(layer, "bias_grad_norm")] == pytest.approx(ref_db.norm().item(), rel=TOLERANCE)
        assert table[(layer, "weight_norm")] == pytest.approx(w.norm().item(), rel=TOLERANCE)
        # The update ratio is the relative size of the SGD step this lr actually takes.
        stepped = w.clone()
        optimizer = SGD([stepped], lr)
        apply(optimizer, optimizer.updates([ref_dW]))
        step_ratio = ((w - stepped).norm() / w.norm()).item()
        assert table[(layer, "update_ratio")] == pytest.approx(step_ratio, rel=1e-8)
    for layer, h in enumerate(hiddens, start=1):
        z = (x if layer == 1 else hiddens[layer - 2]) @ net.weights[layer - 1] + net.biases[layer - 1]  # phi's argument
        assert table[(layer, "act_mean")] == pytest.approx(h.mean().item(), rel=TOLERANCE, abs=1e-15)
        assert table[(layer, "act_std")] == pytest.approx(h.std(correction=0).item(), rel=TOLERANCE)
        assert table[(layer, "avg_sq_mean")] == pytest.approx(h.mean(0).pow(2).mean().item(), rel=TOLERANCE)
        assert table[(layer, "avg_var")] == pytest.approx(h.var(0, correction=0).mean().item(), rel=TOLERANCE)
        saturated = sum(bool(net.activation.saturated(v)) for v in z.flatten())
        assert table[(layer, "saturation")] == pytest.approx(saturated / z.numel(), rel=TOLERANCE)


def random_tensors(shapes, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for shape in shapes]


SHAPES = [(4, 3), (3,), (3, 2), (2,)]


@pytest.mark.parametrize(("lr", "momentum"), [(0.1, 0.0), (0.05, 0.9), (0.5, 0.5)])
def test_sgd_matches_torch_sgd_over_three_steps(lr, momentum):
    params = random_tensors(SHAPES, seed=0)
    torch_params = [p.clone().requires_grad_(True) for p in params]
    grads = [random_tensors(SHAPES, seed=100 + step) for step in range(3)]
    steps_match_torch(SGD(params, lr, momentum), torch.optim.SGD(torch_params, lr=lr, momentum=momentum), grads,
                      rtol=1e-13, atol=1e-15)


def steps_match_torch(ours, reference: torch.optim.Optimizer, grads_per_step: list, rtol: float, atol: float) -> None:
    """Step ours and torch's optimizer on the same gradients; their parameters must agree after every step."""
    torch_params = reference.param_groups[0]["params"]
    for step, grads in enumerate(grads_per_step):
        apply(ours, ours.updates(grads))
        for p, g in zip(torch_params, grads, strict=True):
            p.grad = g.clone()
        reference.step()
        for p, ref in zip(ours.params, torch_params, strict=True):
            torch.testing.assert_close(p, ref.detach(), rtol=rtol, atol=atol, msg=f"step {step}")


def test_adam_matches_torch_adam_over_three_steps():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    torch_params = [p.clone().requires_grad_(True) for p in params]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) * 10**step for s in SHAPES] for step in range(3)]
    steps_match_torch(Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-8),
                      torch.optim.Adam(torch_params, lr=0.01, betas=(0.8, 0.99), eps=1e-8), grads,
                      rtol=1e-6, atol=1e-12)


def test_sgd_updates_the_mlp_parameters_in_place():
    net = MLP([3, 4, 2], dtype=torch.float64)
    before = [p.clone() for p in net.parameters()]
    optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9)
    apply(optimizer, optimizer.updates([torch.ones_like(p) for p in net.parameters()]))
    for p, old in zip(net.weights + net.biases, before, strict=True):
        torch.testing.assert_close(p, old - 0.1, rtol=0, atol=1e-15)


def test_global_norm_is_the_norm_of_all_gradients():
    tensors = random_tensors(SHAPES, seed=1)
    expected = torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors]))
    assert global_norm(tensor_norms(tensors, batched=False)).item() == pytest.approx(expected.item(), rel=1e-14)


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3])  # 1e3 is above the norm: no clipping
def test_clip_by_global_norm_matches_torch(max_norm):
    tensors = random_tensors(SHAPES, seed=2)
    params = [torch.zeros_like(t, requires_grad=True) for t in tensors]
    for p, t in zip(params, tensors, strict=True):
        p.grad = t.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    norm = global_norm(tensor_norms(tensors, batched=False))
    torch.testing.assert_close(norm, total, rtol=1e-14, atol=0)
    clipped = clip_by_global_norm(tensors, max_norm, norm)
    for g, p in zip(clipped, params, strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-14, atol=0)
    if max_norm < norm:
        assert global_norm(tensor_norms(clipped, batched=False)).item() == pytest.approx(max_norm)
