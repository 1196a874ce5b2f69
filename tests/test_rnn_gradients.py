"""The RNN's hand-written backprop through time against autograd on the definitions, in float64: every cell, every
activation of the vanilla cell, both readouts, several lengths, and replicas; the LSTM's forward against
torch.nn.LSTM; the per-step statistics against autograd's dL/dh_t."""

import math

import pytest
import torch

from gradlab.activations import ACTIVATIONS
from gradlab.optim import SGD, tensor_norms
from gradlab.rnn import RNN

F64 = torch.float64
TOLERANCE = 1e-10


def make(cell: str, activation: str, readout: str, steps: int, replicas: int = 1, width: int = 5):
    """A float64 RNN with nonzero biases, an input batch (..., 4, steps, 3) and a random dL/dlogits."""
    net = RNN(3, width, 2, cell=cell, activation=activation, init="xavier_normal", recurrent_init="orthogonal",
              recurrent_gain=0.9, readout=readout, seed=steps, replicas=replicas, dtype=F64)
    gen = torch.Generator().manual_seed(100 + steps)
    net.b = net.b + 0.3 * torch.randn(net.b.shape, generator=gen, dtype=F64)
    net.c = net.c + 0.3 * torch.randn(net.c.shape, generator=gen, dtype=F64)
    lead = (replicas,) if replicas > 1 else ()
    x = torch.randn(*lead, 4, steps, 3, generator=gen, dtype=F64)
    out = (*lead, 4, 2) if readout == "last" else (*lead, 4, steps, 2)
    return net, x, torch.randn(out, generator=gen, dtype=F64)


def reference(net: RNN, x: torch.Tensor, dlogits: torch.Tensor, r: int | None = None):
    """Autograd through the definitions (torch's own sigmoid and tanh), for replica r: gradients of sum(logits *
    dlogits) with respect to [U, W, b, V, c], and dL/dh_t for t = 1..T."""
    pick = (lambda t: t) if r is None else (lambda t: t[r])
    params = [pick(p).clone().requires_grad_(True) for p in net.parameters()]
    U, W, b, V, c = params
    xs, width = pick(x), net.width
    h, cell, states = torch.zeros(xs.shape[0], width, dtype=F64), torch.zeros(xs.shape[0], width, dtype=F64), []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ U + h @ W + b
        if net.cell == "vanilla":
            h = ACTIVATIONS[net.activation_name].fn(a)
        else:
            i, f, g, o = a.split(width, dim=-1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(cell)
        h.retain_grad()
        states.append(h)
    logits = h @ V + c if net.readout == "last" else torch.stack(states, 1) @ V + c
    (logits * pick(dlogits)).sum().backward()
    return [p.grad for p in params], [s.grad for s in states]


def assert_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=TOLERANCE, atol=1e-12)


@pytest.mark.parametrize("readout", ["last", "every"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_vanilla_backprop_through_time_matches_autograd(activation, readout):
    net, x, dlogits = make("vanilla", activation, readout, steps=5)
    back = net.backprop(net.trace(x), dlogits)
    expected, expected_dh = reference(net, x, dlogits)
    assert_close(back.grads, expected)
    assert_close(list(back.dh.unbind(-2)), expected_dh)


@pytest.mark.parametrize("readout", ["last", "every"])
@pytest.mark.parametrize("steps", [1, 4, 9])
def test_lstm_backprop_through_time_matches_autograd(steps, readout):
    net, x, dlogits = make("lstm", "tanh", readout, steps)
    back = net.backprop(net.trace(x), dlogits)
    expected, expected_dh = reference(net, x, dlogits)
    assert_close(back.grads, expected)
    assert_close(list(back.dh.unbind(-2)), expected_dh)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_replicas_backprop_each_replica_as_its_own_network(cell):
    net, x, dlogits = make(cell, "tanh", "every", steps=4, replicas=3)
    back = net.backprop(net.trace(x), dlogits)
    for r in range(3):
        expected, _ = reference(net, x, dlogits, r)
        assert_close([g[r] for g in back.grads], expected)


def test_lstm_forward_equals_torch_nn_lstm_with_the_same_weights():
    """Gate order [i, f, g, o] and the forget bias as torch.nn.LSTM has them (its two biases summed into b)."""
    net = RNN(3, 6, 2, cell="lstm", forget_bias=1.0, dtype=F64, seed=1)
    x = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch_lstm = torch.nn.LSTM(3, 6, batch_first=True, dtype=F64)
    with torch.no_grad():
        torch_lstm.weight_ih_l0.copy_(net.U.T)
        torch_lstm.weight_hh_l0.copy_(net.W.T)
        torch_lstm.bias_ih_l0.copy_(net.b)
        torch_lstm.bias_hh_l0.zero_()
    states, _ = torch_lstm(x)
    trace = net.trace(x)
    torch.testing.assert_close(trace.h[:, 1:], states, rtol=1e-12, atol=1e-12)
    assert (net.b[6:12] == 1.0).all() and (net.b[:6] == 0).all() and (net.b[12:] == 0).all()


def test_identity_recurrent_init_is_the_irnn():
    net = RNN(3, 5, 2, activation="relu", recurrent_init="identity", recurrent_gain=1.0)
    assert torch.equal(net.W, torch.eye(5))


def test_orthogonal_linear_rnn_carries_the_state_gradient_by_exactly_the_gain():
    """Linear cell, orthogonal W scaled by g: dL/dh_{t-1} = dL/dh_t (g Q)^T, so its norm falls by exactly g per step."""
    net = RNN(3, 8, 2, activation="linear", recurrent_gain=0.8, readout="last", dtype=F64)
    x = torch.randn(16, 12, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    back = net.backprop(net.trace(x), torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64))
    norms = back.dh.norm(dim=(0, 2))
    torch.testing.assert_close(norms[:-1] / norms[1:], torch.full((11,), 0.8, dtype=F64), rtol=1e-10, atol=0)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
def test_per_step_rows_follow_their_definitions(cell):
    net, x, dlogits = make(cell, "tanh", "every", steps=4)
    trace = net.trace(x)
    back = net.backprop(trace, dlogits)
    rows = net.measure(trace, back, tensor_norms(back.grads, False), SGD(net.parameters(), 0.1).updates(back.grads))
    table = {(layer, time, name): value for layer, time, name, value in rows.per_replica()[0]}
    _, expected_dh = reference(net, x, dlogits)
    for t, dh in enumerate(expected_dh, start=1):
        # dlogits here stands for the batch-mean loss's gradient: per-example rms = sqrt(B) ||dL/dh_t||_F
        assert table[(1, t, "state_grad_rms")] == pytest.approx(math.sqrt(4) * dh.norm().item(), rel=TOLERANCE)
        own = trace.h[:, t - 1].T @ back.da[:, t - 1]
        assert table[(1, t, "grad_norm")] == pytest.approx(own.norm().item(), rel=TOLERANCE)
        assert table[(1, t, "act_std")] == pytest.approx(trace.h[:, t].std(correction=0).item(), rel=TOLERANCE)
    steps_sum = sum(trace.h[:, t - 1].T @ back.da[:, t - 1] for t in range(1, 5))
    torch.testing.assert_close(steps_sum, back.grads[1])  # the steps' shares add up to dL/dW
    assert table[(None, None, "recurrent_weight_grad_norm")] == pytest.approx(back.grads[1].norm().item())
    if cell == "lstm":
        forget = torch.sigmoid(trace.a[..., 5:10])
        assert table[(1, 2, "forget_mean")] == pytest.approx(forget[:, 1].mean().item(), rel=TOLERANCE)


def test_the_training_loop_trains_an_rnn_through_the_network_protocol():
    """train() knows networks only through gradlab.network: an RNN trains in it unchanged, and its per-step rows
    come out keyed by time."""
    from gradlab.data import Split
    from gradlab.losses import LOSSES
    from gradlab.train import TrainSettings, train

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, 2, generator=gen)
    y = (x[:, :, 0].sum(1) > 0).long()  # the sign of a sum over time
    split = Split(x[:300], y[:300], x[300:], y[300:], 2)
    net = RNN(2, 16, 2, activation="tanh", seed=0)
    seen = []
    result = train(net, LOSSES["cross_entropy"], split, TrainSettings(lr=0.1, momentum=0.9, epochs=8, batch_size=50,
                                                                      log_every=5), seen.append)
    assert result.status == "completed" and result.steps == 48
    finals = {name: value for layer, time, name, value in seen[-1].rows if layer is None}
    firsts = {name: value for layer, time, name, value in seen[0].rows if layer is None}
    assert finals["test_loss"] < 0.5 * firsts["test_loss"] and finals["test_accuracy"] > 0.85
    times = sorted({time for m in seen for layer, time, name, _ in m.rows if name == "state_grad_rms"})
    assert times == [1, 2, 3, 4, 5, 6]


def test_state_gradients_far_below_float32s_squares_are_still_measured():
    """A float32 norm squares its entries: 1e-23 squared underflows. The per-step rms must not read 0 there."""
    net = RNN(3, 8, 2, activation="linear", recurrent_gain=0.3, readout="last")
    x = torch.randn(4, 60, 3, generator=torch.Generator().manual_seed(0))
    trace = net.trace(x)
    back = net.backprop(trace, torch.randn(4, 2, generator=torch.Generator().manual_seed(1)))
    rows = net.measure(trace, back, tensor_norms(back.grads, False), SGD(net.parameters(), 0.1).updates(back.grads))
    table = {(time, name): value for _, time, name, value in rows.per_replica()[0] if time is not None}
    first, last = table[(1, "state_grad_rms")], table[(60, "state_grad_rms")]
    assert 0 < first < 1e-25 and first / last == pytest.approx(0.3**59, rel=1e-3)  # float32 steps, exact gain


def test_an_irnn_learns_the_adding_problem_below_the_baseline_and_reports_its_mse():
    """The adding problem through the config: numeric targets, loss mse, and test_mse (mean (f - y)^2) in place of an
    accuracy; a short IRNN beats always answering 1 (MSE 1/6)."""
    from conftest import compose_config
    from gradlab.experiment import prepare
    from gradlab.train import train

    cfg = compose_config("net=rnn", "dataset=adding", "dataset.seq_len=20", "dataset.n_train=2000", "width=32",
                         "activation=relu", "recurrent_init=identity", "optimizer=adam", "lr=0.001",
                         "clip_grad_norm=1", "epochs=3")
    setup = prepare(cfg)
    seen = []
    train(setup.net, setup.loss, setup.split, setup.settings, seen.append)
    finals = {name: value for layer, _, name, value in seen[-1].rows if layer is None}
    assert "test_accuracy" not in finals and "batch_mse" in {name for _, _, name, _ in seen[1].rows}
    assert finals["test_mse"] == pytest.approx(2 * finals["test_loss"])  # loss mse: 0.5 (f - y)^2 on one output
    assert finals["test_mse"] < 0.7 * (1 / 6)


@pytest.mark.parametrize("cell", ["vanilla", "lstm"])
@pytest.mark.parametrize("readout", ["last", "every"])
def test_inference_gives_the_traced_forward_passs_logits(cell, readout):
    """infer keeps only the current state (a whole data set fits in memory) and computes the same function."""
    for replicas in (1, 3):
        net, x, _ = make(cell, "tanh", readout, steps=6, replicas=replicas)
        torch.testing.assert_close(net.infer(x), net.trace(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(net.infer(x[0]), net.trace(x[0]).logits, rtol=0, atol=0)  # inputs shared by replicas


def test_a_target_at_every_step_sums_the_steps_losses_and_averages_over_examples():
    """readout=every with over_steps(loss): the loop's gradient is that of mean_b sum_t loss(logits_bt, y_bt),
    autograd's on the definition; the score is the share of steps predicted right."""
    from gradlab.losses import LOSSES, over_steps
    from gradlab.train import gradients, score

    net, x, _ = make("lstm", "tanh", "every", steps=5)
    y = torch.randint(0, 2, (4, 5), generator=torch.Generator().manual_seed(3))
    got = gradients(net, over_steps(LOSSES["cross_entropy"]), x, y)
    params = [p.clone().requires_grad_(True) for p in net.parameters()]
    net.U, net.W, net.b, net.V, net.c = params
    logits = net.trace(x).logits
    mean_of_sums = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), reduction="sum") / 4
    mean_of_sums.backward()
    torch.testing.assert_close(got.batch_loss, mean_of_sums.detach(), rtol=1e-12, atol=0)
    assert_close(got.back.grads, [p.grad for p in params])
    hits = (logits.argmax(-1) == y).double().mean(-1)
    torch.testing.assert_close(score(over_steps(LOSSES["cross_entropy"]), logits.detach(), y), hits)


def test_init_gain_scales_the_input_and_readout_weights_and_leaves_the_recurrent_ones():
    """init_gain multiplies the draws of U and V (Le et al. 2015's small input weights), never W: recurrent_gain's."""
    plain, scaled = (RNN(3, 6, 2, init="normal", seed=4, init_gain=gain, dtype=F64) for gain in (1.0, 1e-3))
    torch.testing.assert_close(scaled.U, 1e-3 * plain.U, rtol=1e-15, atol=0)
    torch.testing.assert_close(scaled.V, 1e-3 * plain.V, rtol=1e-15, atol=0)
    assert torch.equal(scaled.W, plain.W)
