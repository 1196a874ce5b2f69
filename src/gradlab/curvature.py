"""The curvature of the training loss, from gradlab's own backward pass: Hessian-vector products by central
differences of the hand-written gradient in float64, and the Hessian's largest eigenvalue (the sharpness) by Lanczos.

H v = (g(theta + eps v) - g(theta - eps v)) / (2 eps) + O(eps^2 |third derivative|): with eps = STEP (1 + |theta|) /
|v| in float64 the truncation and the round-off (about 1e-16 / eps) are both near 1e-8 of H v. Every function works
on a float64 copy of the network (`cast`), so the network itself, its dtype and a batch norm's running statistics are
left as they were. H is the Hessian of the mean loss over (x, y), in the training mode the loop trains in.
"""

import math

import torch
from torch import Tensor

from gradlab.losses import Loss

STEP = 1e-5  # eps relative to 1 + |theta|, over |v|
LANCZOS_STEPS = 30  # Krylov dimension: the top Ritz value of a few hundred parameters converges well before


def mean_loss_gradient(net, loss: Loss, x: Tensor, y: Tensor) -> list[Tensor]:
    """The gradient of the mean loss over (x, y), aligned with net.parameters()."""
    trace = net.trace(x)
    losses, dlogits = loss.value_and_grad(trace.logits, y)
    return net.backprop(trace, dlogits / losses.shape[-1]).grads


def float64_copy(net):
    """A float64 copy whose tensors are the network's own values, in tensors of its own."""
    return net.cast(torch.float64)


def dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((u * v).sum() for u, v in zip(a, b, strict=True))


def hvp_exact_copy(work, loss: Loss, x: Tensor, y: Tensor, vector: list[Tensor]) -> list[Tensor]:
    """H v on `work`, a float64 network whose parameters this moves and puts back exactly."""
    params = work.parameters()
    kept = [p.clone() for p in params]
    norm = math.sqrt(float(dot(vector, vector)))
    if norm == 0:
        return [torch.zeros_like(p) for p in params]
    eps = STEP * (1 + math.sqrt(float(dot(kept, kept)))) / norm
    for p, v in zip(params, vector, strict=True):
        p.add_(v, alpha=eps)
    plus = mean_loss_gradient(work, loss, x, y)
    for p, k, v in zip(params, kept, vector, strict=True):
        p.copy_(k).add_(v, alpha=-eps)
    minus = mean_loss_gradient(work, loss, x, y)
    for p, k in zip(params, kept, strict=True):
        p.copy_(k)
    return [(a - b) / (2 * eps) for a, b in zip(plus, minus, strict=True)]


def hvp(net, loss: Loss, x: Tensor, y: Tensor, vectors: list[Tensor]) -> list[Tensor]:
    """H v for the mean loss over (x, y), v and H v aligned with net.parameters(), in float64."""
    work = float64_copy(net)
    x64 = x.to(torch.float64)
    return hvp_exact_copy(work, loss, x64, y, [v.to(torch.float64) for v in vectors])


def top_eigenvalue(net, loss: Loss, x: Tensor, y: Tensor, steps: int = LANCZOS_STEPS, seed: int = 0) -> float:
    """The Hessian's largest algebraic eigenvalue (the sharpness) by Lanczos with full reorthogonalization: the top
    Ritz value of `steps` Hessian-vector products from a seeded random start (one network, no replicas)."""
    if getattr(net, "replicas", 1) != 1:
        raise ValueError("top_eigenvalue takes one network: replicas=1")
    work, x64 = float64_copy(net), x.to(torch.float64)
    shapes = [p.shape for p in work.parameters()]
    sizes = [math.prod(s) for s in shapes]
    count = sum(sizes)

    def apply(v: Tensor) -> Tensor:
        pieces = [piece.reshape(s) for piece, s in zip(v.split(sizes), shapes, strict=True)]
        return torch.cat([h.reshape(-1) for h in hvp_exact_copy(work, loss, x64, y, pieces)])

    gen = torch.Generator().manual_seed(seed)
    basis = [torch.randn(count, generator=gen, dtype=torch.float64)]
    basis[0] /= basis[0].norm()
    alphas, betas = [], []
    for j in range(min(steps, count)):
        w = apply(basis[j])
        alphas.append(float(basis[j] @ w))
        w = w - torch.stack(basis).T @ (torch.stack(basis) @ w)  # full reorthogonalization (twice is enough)
        w = w - torch.stack(basis).T @ (torch.stack(basis) @ w)
        beta = float(w.norm())
        if beta < 1e-10 * max(1.0, abs(alphas[-1])) or j == min(steps, count) - 1:
            break
        betas.append(beta)
        basis.append(w / beta)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(tridiagonal).max())
