"""Backprop through time: gradlab.RNN's hand-written step against the same cell in autograd and against torch's fused
nn.RNN / nn.LSTM, and what measuring per time step costs; the cases and ratios that benchmarks/run.py interleaves."""

from collections.abc import Callable

import torch
from torch import nn

from gradlab.losses import LOSSES
from gradlab.optim import SGD, apply
from gradlab.rnn import RNN
from gradlab.train import gradients, step_rows, step_updates

SIZES = {"small": (32, 64, 50, 32), "large": (32, 512, 200, 32)}  # name: (n_in, width, T, batch)
TINY = {"small": (4, 8, 5, 4), "large": (4, 16, 8, 4)}
CE = LOSSES["cross_entropy"]


def autograd_step(net: RNN, x: torch.Tensor, dlogits: torch.Tensor) -> Callable[[], object]:
    """The same cell written with torch ops, its gradients by autograd."""
    params = [p.clone().requires_grad_(True) for p in net.parameters()]
    width = net.width

    def run():
        U, W, b, V, c = params
        inputs, h, cell = x @ U + b, torch.zeros(x.shape[0], width), torch.zeros(x.shape[0], width)
        for t in range(x.shape[1]):
            a = inputs[:, t] + h @ W
            if net.cell == "vanilla":
                h = torch.tanh(a)
                continue
            i, f, g, o = a.split(width, -1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(cell)
        return torch.autograd.grad(((h @ V + c) * dlogits).sum(), params)

    return run


def fused_step(net: RNN, x: torch.Tensor, dlogits: torch.Tensor) -> Callable[[], object]:
    """torch.nn.RNN (tanh) or nn.LSTM of the same sizes, forward and backward, as a user would compare."""
    module = (nn.RNN if net.cell == "vanilla" else nn.LSTM)(net.n_in, net.width, batch_first=True)
    readout = nn.Linear(net.width, net.n_out)

    def run():
        module.zero_grad(set_to_none=True)
        readout.zero_grad(set_to_none=True)
        states, _ = module(x)
        (readout(states[:, -1]) * dlogits).sum().backward()

    return run


def measured_steps(size: tuple[int, int, int, int], log_every: int | None, steps: int = 5) -> Callable[[], object]:
    """`steps` training steps of a vanilla tanh RNN, measuring every log_every-th (None: never), as train() does."""
    n_in, width, length, batch = size
    net = RNN(n_in, width, 10, activation="tanh")
    optimizer = SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, length, n_in), torch.randint(0, 10, (batch,))

    def run():
        for step in range(steps):
            g = gradients(net, CE, x, y)
            updates = step_updates(optimizer, g, None)
            if log_every and step % log_every == 0:
                step_rows(net, CE, g, y, updates).per_replica()
            apply(optimizer, updates)

    return run


def cases(sizes: dict[str, tuple[int, int, int, int]]) -> dict[str, Callable[[], object]]:
    found = {}
    for name, (n_in, width, length, batch) in sizes.items():
        x, dlogits = torch.randn(batch, length, n_in), torch.randn(batch, 10)
        for cell in ("vanilla", "lstm"):
            net = RNN(n_in, width, 10, cell=cell, activation="tanh")
            found[f"bptt {name} {cell} manual"] = lambda net=net, x=x, d=dlogits: net.backprop(net.trace(x), d)
            found[f"bptt {name} {cell} autograd"] = autograd_step(net, x, dlogits)
            found[f"bptt {name} {cell} torch fused"] = fused_step(net, x, dlogits)
    long = (sizes["small"][0], sizes["small"][1], sizes["large"][2], sizes["small"][3])  # width 64, T = 200
    found["rnn steps T=200 log_every=5"] = measured_steps(long, 5)
    found["rnn steps T=200 unmeasured"] = measured_steps(long, None)
    return found


RATIOS = [  # (measure, numerator, denominator, offset, goal): issue 18's; None: reported, no goal
    *[(f"BPTT manual / autograd, {cell}, {name}", f"bptt {name} {cell} manual", f"bptt {name} {cell} autograd", 0,
       0.9 if name == "small" else 1.0) for name in SIZES for cell in ("vanilla", "lstm")],
    *[(f"BPTT manual / torch's fused nn.{'RNN' if cell == 'vanilla' else 'LSTM'}, {name}", f"bptt {name} {cell} manual",
       f"bptt {name} {cell} torch fused", 0, None) for name in SIZES for cell in ("vanilla", "lstm")],
    ("RNN per-step measurement overhead, T=200, log_every=5", "rnn steps T=200 log_every=5",
     "rnn steps T=200 unmeasured", -1, 0.15),
]
