"""SGD with optional momentum and optional global-norm gradient clipping, by hand."""

import torch
from torch import Tensor


def global_norm(grads: list[tuple[Tensor, Tensor]]) -> Tensor:
    """sqrt(sum over layers of ||dW||^2 + ||db||^2), a 0-d tensor."""
    squares = [g.pow(2).sum() for pair in grads for g in pair]
    return torch.stack(squares).sum().sqrt()


def clip_by_global_norm(
    grads: list[tuple[Tensor, Tensor]], max_norm: float, norm: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """Scale all gradients by min(1, max_norm / norm), as torch.nn.utils.clip_grad_norm_ does."""
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return [(dW * scale, db * scale) for dW, db in grads]


class SGD:
    """p <- p - lr * v, v <- momentum * v + g (PyTorch's convention; v = g when momentum = 0)."""

    def __init__(self, params: list[Tensor], lr: float, momentum: float = 0.0) -> None:
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.velocity = [torch.zeros_like(p) for p in params] if momentum else []

    def step(self, grads: list[Tensor]) -> None:
        """Update the parameters in place."""
        if not self.momentum:
            for p, g in zip(self.params, grads, strict=True):
                p.sub_(g, alpha=self.lr)
            return
        for p, v, g in zip(self.params, self.velocity, grads, strict=True):
            v.mul_(self.momentum).add_(g)
            p.sub_(v, alpha=self.lr)
