"""The training loop: mini-batch SGD on a manual-backprop MLP, handing measurements to a callback.

Step s is the mini-batch seen after s updates: step 0 is measured at initialization, before any
update. The loop knows nothing about files, W&B or progress bars; `on_measure` receives everything.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from gradlab.losses import Loss
from gradlab.mlp import MLP
from gradlab.optim import SGD, clip_by_global_norm, global_norm
from gradlab.stats import layer_stats

EVAL_CHUNK = 8192


class Split(NamedTuple):
    x_train: Tensor  # (N, n_features)
    y_train: Tensor  # (N,) class indices
    x_test: Tensor
    y_test: Tensor
    n_classes: int


class Measurement(NamedTuple):
    step: int
    epoch: int
    rows: list[tuple[int | None, str, float]]  # (layer or None for the whole network, name, value)
    epoch_end: bool  # rows hold the full train/test evaluation that closes an epoch (or step 0)


class TrainResult(NamedTuple):
    status: str  # "completed" or "diverged"
    steps: int  # updates made
    diverged_at_step: int | None


def evaluate(net: MLP, loss: Loss, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(mean loss, accuracy) over a whole set, in chunks so memory stays bounded."""
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), EVAL_CHUNK):
        logits = net.infer(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        total_loss += loss.value(logits, target).sum()
        correct += (loss.predict(logits) == target).sum()
    return total_loss / len(x), correct / len(x)


def evaluation_rows(net: MLP, loss: Loss, split: Split) -> list[tuple[int | None, str, Tensor]]:
    train_loss, train_accuracy = evaluate(net, loss, split.x_train, split.y_train)
    test_loss, test_accuracy = evaluate(net, loss, split.x_test, split.y_test)
    return [
        (None, "train_loss", train_loss),
        (None, "train_accuracy", train_accuracy),
        (None, "test_loss", test_loss),
        (None, "test_accuracy", test_accuracy),
    ]


def as_floats(rows: list[tuple[int | None, str, Tensor]]) -> list[tuple[int | None, str, float]]:
    """Turn 0-d tensors into floats with one device sync."""
    values = torch.stack([value.to(torch.float64) for _, _, value in rows]).tolist()
    return [(layer, name, value) for (layer, name, _), value in zip(rows, values, strict=True)]


def train(
    net: MLP,
    loss: Loss,
    split: Split,
    *,
    lr: float,
    momentum: float,
    clip_grad_norm: float | None,
    epochs: int,
    batch_size: int,
    log_every: int,
    generator: torch.Generator,
    on_measure: Callable[[Measurement], None],
) -> TrainResult:
    """Train for `epochs` epochs; stop at once at a non-finite loss or gradient (status diverged)."""
    optimizer = SGD([p for pair in zip(net.weights, net.biases, strict=True) for p in pair], lr, momentum)
    device = split.x_train.device
    step = 0
    initial = evaluation_rows(net, loss, split)
    on_measure(Measurement(0, 0, as_floats(initial), epoch_end=True))
    for epoch in range(epochs):
        order = torch.randperm(len(split.x_train), generator=generator).to(device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, y = split.x_train[idx], split.y_train[idx]
            logits = net.forward(x)  # (B, n_out)
            batch_loss = loss.value(logits, y).mean()
            grads = net.backward(loss.grad(logits, y) / len(y))
            norm = global_norm(grads)
            finite = bool(torch.isfinite(batch_loss + norm))
            if step % log_every == 0 or not finite:
                accuracy = (loss.predict(logits) == y).to(logits.dtype).mean()
                rows = layer_stats(net, grads, lr)
                rows += [(None, "batch_loss", batch_loss), (None, "batch_accuracy", accuracy)]
                on_measure(Measurement(step, epoch, as_floats(rows), epoch_end=False))
            if not finite:
                return TrainResult("diverged", step, step)
            if clip_grad_norm is not None:
                grads = clip_by_global_norm(grads, clip_grad_norm, norm)
            optimizer.step([g for pair in grads for g in pair])
            step += 1
        closing = as_floats(evaluation_rows(net, loss, split))
        on_measure(Measurement(step, epoch, closing, epoch_end=True))
        if not all(math.isfinite(value) for _, name, value in closing if name.endswith("loss")):
            return TrainResult("diverged", step, step)
    return TrainResult("completed", step, None)
