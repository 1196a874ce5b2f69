"""The training loop: mini-batch SGD on a manual-backprop MLP, handing measurements to a callback.

Step s is the mini-batch seen after s updates: step 0 is measured at initialization, before any
update. The loop knows nothing about files, W&B or progress bars; `on_measure` receives everything.
A replica-batched network (MLP(replicas=R)) trains each replica on its own data order, from its
own generator, and a replica that diverges is frozen while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from gradlab.jacobian import jacobian_rows, log_singular_values
from gradlab.losses import Loss
from gradlab.measurement import Block, Measurement, block, concat
from gradlab.mlp import MLP
from gradlab.optim import SGD, Adam, Optimizer, Step, apply, clip_by_global_norm, global_norm, tensor_norms
from gradlab.stats import layer_stats

if TYPE_CHECKING:  # the loop only reads a Split's tensors; it needs nothing else of the data module
    from gradlab.data import Split

EVAL_CHUNK = 8192


@dataclass(frozen=True)
class TrainSettings:
    """How to train: the optimizer's and the loop's settings, as plain values."""

    lr: float
    momentum: float = 0.0
    clip_grad_norm: float | None = None
    epochs: int = 1
    batch_size: int = 100
    log_every: int = 5
    optimizer: str = "sgd"  # a key of OPTIMIZERS
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-8  # adam
    jacobian_examples: int = 0  # the first this many test examples: J's spectrum at step 0 and epoch ends
    jacobian_every_epoch: bool = False  # True: at every epoch's end too


class TrainResult(NamedTuple):
    status: str  # "completed", or "diverged" when every replica diverged
    steps: int  # updates made
    diverged_at_step: int | None
    replica_diverged_at: tuple[int | None, ...] = (None,)  # per replica: the step it diverged at


def evaluate(net: MLP, loss: Loss, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(mean loss, accuracy) over a whole set, in chunks so memory stays bounded; (R,) each if batched."""
    total_loss, correct = 0.0, 0.0
    for start in range(0, len(x), EVAL_CHUNK):
        logits = net.infer(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        total_loss = total_loss + loss.value(logits, target).to(torch.float64).sum(-1)
        correct = correct + (loss.predict(logits) == target).to(torch.float64).sum(-1)
    return total_loss / len(x), correct / len(x)


def evaluation_rows(net: MLP, loss: Loss, split: Split) -> Block:
    """train_loss, train_accuracy, test_loss, test_accuracy over the full sets."""
    train_loss, train_accuracy = evaluate(net, loss, split.x_train, split.y_train)
    test_loss, test_accuracy = evaluate(net, loss, split.x_test, split.y_test)
    keys = [(None, "train_loss"), (None, "train_accuracy"), (None, "test_loss"), (None, "test_accuracy")]
    return block(keys, [train_loss, train_accuracy, test_loss, test_accuracy])


def closing_rows(net: MLP, loss: Loss, split: Split, jacobian_x: Tensor | None) -> tuple[Block, Tensor | None]:
    """The full-set evaluation and, given fixed examples, the Jacobian's rows and spectra as ln s, (R, B, k)."""
    rows = evaluation_rows(net, loss, split)
    if jacobian_x is None:
        return rows, None
    spectra = log_singular_values(net, jacobian_x).reshape(net.replicas, len(jacobian_x), -1)
    return concat(rows, jacobian_rows(spectra)), spectra


class Run:
    """The state of one training run: which replicas still train, and where measurements go."""

    def __init__(self, net: MLP, optimizer: Optimizer, on_measure: Callable[[Measurement], None]) -> None:
        self.net, self.optimizer, self.on_measure = net, optimizer, on_measure
        self.diverged_at: list[int | None] = [None] * net.replicas

    def alive(self) -> list[int]:
        return [r for r, at in enumerate(self.diverged_at) if at is None]

    def emit(self, step: int, epoch: int, measured: Block, spectra: Tensor | None = None, *, epoch_end: bool,
             replicas: list[int]) -> None:
        floats = measured.per_replica()
        spectra = spectra.tolist() if spectra is not None else [None] * len(floats)  # (R, B, k): one sync
        for r in replicas:
            self.on_measure(Measurement(step, epoch, floats[r], epoch_end, r, spectra[r]))

    def mark_diverged(self, step: int, finite: Tensor) -> list[int]:
        """Record each live replica whose loss or gradient went non-finite at this step; returns them."""
        dead = [r for r, ok in enumerate(finite.reshape(-1).tolist()) if not ok and self.diverged_at[r] is None]
        for r in dead:
            self.diverged_at[r] = step
        return dead

    def freeze_diverged(self) -> None:
        """Hold diverged replicas at zero parameters and optimizer state, so no NaN or inf rides along."""
        dead = [r for r, at in enumerate(self.diverged_at) if at is not None]
        if dead and self.net.batched:
            for p in [*self.optimizer.params, *self.optimizer.state]:
                p[dead] = 0


class Gradients(NamedTuple):
    logits: Tensor  # (..., B, n_out)
    batch_loss: Tensor  # () or (R,)
    grads: list[Tensor]  # the gradient of each of net.parameters(), in its order
    grad_norms: Tensor  # each gradient's norm, (n_params,) or (n_params, R)
    norm: Tensor  # global gradient norm, () or (R,)


def gradients(net: MLP, loss: Loss, x: Tensor, y: Tensor) -> Gradients:
    """Forward and backward on one mini-batch, for the batch-mean loss."""
    logits = net.forward(x)
    losses, dlogits = loss.value_and_grad(logits, y)  # (..., B), (..., B, n_out): d loss_b / d logits_b
    batch_loss = losses.mean(-1)
    grads = net.backward(dlogits / y.shape[-1])
    grad_norms = tensor_norms(grads, net.batched)
    return Gradients(logits, batch_loss, grads, grad_norms, global_norm(grad_norms))


def step_rows(net: MLP, loss: Loss, g: Gradients, y: Tensor, updates: Step) -> Block:
    """Everything measured at a step: the per-layer statistics, the batch loss and accuracy."""
    accuracy = (loss.predict(g.logits) == y).to(g.logits.dtype).mean(-1)
    whole = block([(None, "batch_loss"), (None, "batch_accuracy")], [g.batch_loss, accuracy])
    update_norms = updates.norms(net.depth, net.batched)  # the weights come first in parameters()
    return concat(layer_stats(net, g.grad_norms, update_norms), whole)


OPTIMIZERS: dict[str, Callable[[list[Tensor], TrainSettings], Optimizer]] = {
    "sgd": lambda params, s: SGD(params, s.lr, s.momentum),
    "adam": lambda params, s: Adam(params, s.lr, (s.beta1, s.beta2), s.eps),
}


def step_updates(optimizer: Optimizer, g: Gradients, clip_grad_norm: float | None) -> Step:
    """The step the optimizer takes from these gradients, clipped first when asked."""
    grads = g.grads if clip_grad_norm is None else clip_by_global_norm(g.grads, clip_grad_norm, g.norm)
    return optimizer.updates(grads)


def train(net: MLP, loss: Loss, split: Split, settings: TrainSettings,
          on_measure: Callable[[Measurement], None]) -> TrainResult:
    """Train for settings.epochs epochs; a non-finite loss or gradient stops that replica at once (diverged).

    Each replica's data order comes from net.generators[r], the generator that drew its weights.
    """
    epochs, batch_size = settings.epochs, settings.batch_size
    run = Run(net, OPTIMIZERS[settings.optimizer](net.parameters(), settings), on_measure)
    step = 0
    fixed = split.x_test[: settings.jacobian_examples] if settings.jacobian_examples and net.depth > 1 else None
    run.emit(0, 0, *closing_rows(net, loss, split, fixed), epoch_end=True, replicas=run.alive())
    for epoch in range(max(epochs, 1)):  # epochs=0 still measures the first mini-batch at init
        orders = torch.stack([torch.randperm(len(split.x_train), generator=g) for g in net.generators])
        orders = (orders if net.batched else orders[0]).to(split.x_train.device)  # (R, N) or (N,)
        for start in range(0, orders.shape[-1], batch_size):
            idx = orders[..., start : start + batch_size]
            x, y = split.x_train[idx], split.y_train[idx]  # (..., B, n_features), (..., B)
            g = gradients(net, loss, x, y)
            finite = torch.isfinite(g.batch_loss + g.norm)
            dead = run.mark_diverged(step, finite) if not bool(finite.all()) else []
            updates = step_updates(run.optimizer, g, settings.clip_grad_norm)
            if step % settings.log_every == 0 or dead:
                run.emit(step, epoch, step_rows(net, loss, g, y, updates), epoch_end=False,
                         replicas=sorted(run.alive() + dead))
            if not run.alive():
                return TrainResult("diverged", step, step, tuple(run.diverged_at))
            if epochs == 0:
                return TrainResult("completed", 0, None, tuple(run.diverged_at))
            apply(run.optimizer, updates)
            run.freeze_diverged()
            step += 1
        closing, spectra = closing_rows(net, loss, split, fixed if settings.jacobian_every_epoch else None)
        run.emit(step, epoch, closing, spectra, epoch_end=True, replicas=run.alive())
        losses = closing.values[[i for i, (_, name) in enumerate(closing.keys) if name.endswith("loss")]]
        run.mark_diverged(step, torch.isfinite(losses).all(0))
        run.freeze_diverged()
        if not run.alive():
            return TrainResult("diverged", step, step, tuple(run.diverged_at))
    return TrainResult("completed", step, None, tuple(run.diverged_at))
