"""The training loop: mini-batch SGD on any network family (gradlab.network), handing measurements to a callback.

Step s is the mini-batch seen after s updates: step 0 is measured at initialization, before any
update. The loop knows nothing about files, W&B or progress bars; `on_measure` receives everything.
A replica-batched network (replicas=R) trains each replica on its own data order, from its
own generator, and a replica that diverges is frozen while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from gradlab.curvature import top_eigenvalue
from gradlab.jacobian import jacobian_rows, log_singular_values
from gradlab.losses import Loss
from gradlab.measurement import Block, Measurement, block, concat, whole
from gradlab.network import Backprop, Network, Trace
from gradlab.optim import SGD, Adam, Optimizer, Step, apply, clip_by_global_norm, global_norm, tensor_norms

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
    eval_every: int = 0  # the full sets' loss and score (closing's rows) every this many steps too; 0: epoch ends only
    optimizer: str = "sgd"  # a key of OPTIMIZERS
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-8  # adam
    jacobian_examples: int = 0  # the first this many test examples: J's spectrum at step 0 and epoch ends (a
    # network that offers gradlab.network.HasJacobian)
    jacobian_every_epoch: bool = False  # True: at every epoch's end too
    curvature_every: int = 0  # the sharpness (gradlab.curvature) at step 0 and every this many steps; 0: never
    curvature_examples: int = 2000  # the first this many training examples: the loss whose Hessian is measured


class TrainResult(NamedTuple):
    status: str  # "completed", or "diverged" when every replica diverged
    steps: int  # updates made
    diverged_at_step: int | None
    replica_diverged_at: tuple[int | None, ...] = (None,)  # per replica: the step it diverged at


def score(loss: Loss, logits: Tensor, target: Tensor) -> Tensor:
    """Each example's score, (..., B): 1 where the predicted class is the target's; for numeric targets (regression),
    the squared error summed over outputs, (f - y)^2; a per-step loss: the mean over the example's steps."""
    if target.is_floating_point():
        scores = (logits - target).pow(2).sum(-1)
    else:
        scores = (loss.predict(logits) == target).to(logits.dtype)
    return scores.mean(-1) if loss.per_step else scores


def metric_name(y: Tensor) -> str:
    """What score() gives for these targets: accuracy, or mse for numeric ones."""
    return "mse" if y.is_floating_point() else "accuracy"


def evaluate(net: Network, loss: Loss, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(mean loss, mean score: accuracy or mse) over a whole set, in chunks so memory stays bounded; (R,) if batched."""
    total_loss, total_score = 0.0, 0.0
    for start in range(0, len(x), EVAL_CHUNK):
        logits = net.infer(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        total_loss = total_loss + loss.value(logits, target).to(torch.float64).sum(-1)
        total_score = total_score + score(loss, logits, target).to(torch.float64).sum(-1)
    return total_loss / len(x), total_score / len(x)


class Closing(NamedTuple):
    """The measurements that close an epoch (and open the run, at step 0)."""

    rows: Block  # train_loss, train_accuracy (or _mse), test_loss, test_accuracy (or _mse), J's rows when measured
    spectra: Tensor | None  # J's ln s, (R, B, k), when measured
    finite: Tensor  # per replica: both losses are finite, (R,)


def closing(net: Network, loss: Loss, split: Split, jacobian_x: Tensor | None) -> Closing:
    """The full-set evaluation and, given fixed examples, the Jacobian's rows and spectra as ln s, (R, B, k)."""
    train_loss, train_score = evaluate(net, loss, split.x_train, split.y_train)
    test_loss, test_score = evaluate(net, loss, split.x_test, split.y_test)
    metric = metric_name(split.y_train)
    rows = block(whole("train_loss", f"train_{metric}", "test_loss", f"test_{metric}"),
                 [train_loss, train_score, test_loss, test_score])
    finite = torch.isfinite(torch.stack([train_loss, test_loss])).all(0).reshape(-1)
    if jacobian_x is None:
        return Closing(rows, None, finite)
    spectra = log_singular_values(net, jacobian_x).reshape(net.replicas, len(jacobian_x), -1)
    return Closing(concat(rows, jacobian_rows(spectra)), spectra, finite)


class Run:
    """The state of one training run: which replicas still train, and where measurements go."""

    def __init__(self, net: Network, optimizer: Optimizer, on_measure: Callable[[Measurement], None]) -> None:
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

    def close_epoch(self, step: int, epoch: int, closed: Closing) -> None:
        """Emit an epoch's closing measurements; a replica whose full-set loss is not finite has diverged."""
        self.emit(step, epoch, closed.rows, closed.spectra, epoch_end=True, replicas=self.alive())
        self.mark_diverged(step, closed.finite)
        self.freeze_diverged()

    def result(self, steps: int) -> TrainResult:
        """The run's outcome after `steps` updates: diverged when every replica diverged."""
        status = "completed" if self.alive() else "diverged"
        return TrainResult(status, steps, None if self.alive() else steps, tuple(self.diverged_at))


class Gradients(NamedTuple):
    trace: Trace  # the forward pass, with logits (..., B, n_out)
    back: Backprop  # back.grads: the gradient of each of net.parameters(), in its order
    batch_loss: Tensor  # () or (R,)
    grad_norms: Tensor  # each gradient's norm, (n_params,) or (n_params, R)
    norm: Tensor  # global gradient norm, () or (R,)


def gradients(net: Network, loss: Loss, x: Tensor, y: Tensor) -> Gradients:
    """Forward and backward on one mini-batch, for the batch-mean loss."""
    trace = net.trace(x)
    losses, dlogits = loss.value_and_grad(trace.logits, y)  # (..., B), (..., B, n_out): d loss_b / d logits_b
    back = net.backprop(trace, dlogits / losses.shape[-1])  # the batch-mean loss: B examples
    grad_norms = tensor_norms(back.grads, net.batched)
    return Gradients(trace, back, losses.mean(-1), grad_norms, global_norm(grad_norms))


def step_rows(net: Network, loss: Loss, g: Gradients, y: Tensor, updates: Step) -> Block:
    """Everything measured at a step: the network's own statistics (the gradient's noise across the batch among
    them, gradlab.per_example), the batch loss and accuracy (or mse)."""
    scores = score(loss, g.trace.logits, y).mean(-1)
    batch = block(whole("batch_loss", f"batch_{metric_name(y)}"), [g.batch_loss, scores])
    return concat(net.measure(g.trace, g.back, g.grad_norms, updates), batch)


OPTIMIZERS: dict[str, Callable[[list[Tensor], TrainSettings], Optimizer]] = {
    "sgd": lambda params, s: SGD(params, s.lr, s.momentum),
    "adam": lambda params, s: Adam(params, s.lr, (s.beta1, s.beta2), s.eps),
}


def step_updates(optimizer: Optimizer, g: Gradients, clip_grad_norm: float | None) -> Step:
    """The step the optimizer takes from these gradients, clipped first when asked."""
    grads = g.back.grads if clip_grad_norm is None else clip_by_global_norm(g.back.grads, clip_grad_norm, g.norm)
    return optimizer.updates(grads)


def mini_batches(net: Network, split: Split, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch's mini-batches, (..., B, n_features) and (..., B): replica r's order from net.generators[r]."""
    orders = torch.stack([torch.randperm(len(split.x_train), generator=g) for g in net.generators])
    orders = (orders if net.batched else orders[0]).to(split.x_train.device)  # (R, N) or (N,)
    for start in range(0, orders.shape[-1], batch_size):
        idx = orders[..., start : start + batch_size]
        yield split.x_train[idx], split.y_train[idx]


def measured_step(run: Run, loss: Loss, g: Gradients, y: Tensor, step: int, epoch: int,
                  settings: TrainSettings, curvature: tuple[Tensor, Tensor] | None = None,
                  split: Split | None = None) -> Step:
    """A mini-batch's gradients, divergence checked, measured when due (the sharpness on `curvature`'s fixed
    examples, and the full sets of `split` at eval_every, when those are due): the step the optimizer will take."""
    finite = torch.isfinite(g.batch_loss + g.norm)
    dead = run.mark_diverged(step, finite) if not bool(finite.all()) else []
    updates = step_updates(run.optimizer, g, settings.clip_grad_norm)
    sharp = curvature is not None and step % settings.curvature_every == 0 and not dead
    full = split is not None and settings.eval_every and step % settings.eval_every == 0 and not dead
    if step % settings.log_every == 0 or dead or sharp or full:
        rows = step_rows(run.net, loss, g, y, updates)
        if sharp:
            sharpness = torch.tensor(top_eigenvalue(run.net, loss, *curvature), dtype=torch.float64)
            rows = concat(rows, block(whole("sharpness"), [sharpness]))
        if full:
            rows = concat(rows, closing(run.net, loss, split, None).rows)
        run.emit(step, epoch, rows, epoch_end=False, replicas=sorted(run.alive() + dead))
    return updates


def train(net: Network, loss: Loss, split: Split, settings: TrainSettings,
          on_measure: Callable[[Measurement], None]) -> TrainResult:
    """Train for settings.epochs epochs; a non-finite loss or gradient stops that replica at once (diverged).

    epochs=0 measures the initialization only: the full sets, and the first mini-batch with the step that the
    optimizer would take from it (never applied). Each replica's data order comes from net.generators[r].
    """
    run = Run(net, OPTIMIZERS[settings.optimizer](net.parameters(), settings), on_measure)
    fixed = split.x_test[: settings.jacobian_examples] if settings.jacobian_examples else None
    curvature = None  # the fixed training examples whose mean loss's Hessian gives the sharpness
    if settings.curvature_every:
        curvature = (split.x_train[: settings.curvature_examples], split.y_train[: settings.curvature_examples])
    opening = closing(net, loss, split, fixed)
    run.emit(0, 0, opening.rows, opening.spectra, epoch_end=True, replicas=run.alive())
    if settings.epochs == 0:
        x, y = next(mini_batches(net, split, settings.batch_size))
        measured_step(run, loss, gradients(net, loss, x, y), y, 0, 0, settings, curvature)
        return run.result(0)
    step = 0
    for epoch in range(settings.epochs):
        for batch, (x, y) in enumerate(mini_batches(net, split, settings.batch_size)):
            # g lives until the next step's replaces it: freed at the step's end, its tensors would let glibc return
            # the heap to the OS, and the next step fault it back in (1.2x the step time at width 256)
            g = gradients(net, loss, x, y)
            evaluated = split if batch else None  # an epoch's first step: the last one's end evaluated this network
            updates = measured_step(run, loss, g, y, step, epoch, settings, curvature, evaluated)
            if not run.alive():
                return run.result(step)
            apply(run.optimizer, updates)
            run.freeze_diverged()
            step += 1
        run.close_epoch(step, epoch, closing(net, loss, split, fixed if settings.jacobian_every_epoch else None))
        if not run.alive():
            return run.result(step)
    return run.result(step)
