"""SGD with optional momentum and optional global-norm gradient clipping, by hand."""

import torch
from torch import Tensor


def global_norm(grads: list[tuple[Tensor, Tensor]]) -> Tensor:
    """sqrt(sum over layers of ||dW||^2 + ||db||^2): 0-d, or (R,) for replica-batched gradients."""
    squares = [dW.pow(2).sum((-2, -1)) + db.pow(2).sum(-1) for dW, db in grads]
    return torch.stack(squares).sum(0).sqrt()


def clip_by_global_norm(
    grads: list[tuple[Tensor, Tensor]], max_norm: float, norm: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """Scale all gradients by min(1, max_norm / norm), as torch.nn.utils.clip_grad_norm_ does."""
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)  # 0-d, or (R,): one scale per replica
    return [(dW * scale[..., None, None], db * scale[..., None]) for dW, db in grads]


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
