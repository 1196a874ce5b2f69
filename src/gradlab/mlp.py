"""A multi-layer perceptron whose backward pass is written by hand.

Layer l (1..depth, 1 nearest the input) computes z^l = h^{l-1} @ W^l + b^l, then
h^l = phi(z^l) for hidden layers; the last layer's z is the logits (no activation).

With `replicas=R`, R independently initialized copies train as one batched computation:
every weight gains a leading replica dimension, (R, fan_in, fan_out), and inputs are (R, B, n)
(or (B, n), shared by all replicas). The same code serves both: matmul broadcasts over it.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from gradlab.activations import get_activation
from gradlab.inits import get_init


def affine(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """h @ w + b, as one fused kernel where the shapes allow (addmm, baddbmm)."""
    if h.dim() == w.dim() == 2:
        return torch.addmm(b, h, w)
    if h.dim() == w.dim() == 3:
        return torch.baddbmm(b.unsqueeze(-2), h, w)
    return torch.matmul(h, w) + b.unsqueeze(-2)  # shared inputs (B, n) against replica weights


def replica_generators(seed: int, replicas: int) -> list[torch.Generator]:
    """One generator per replica, seeded seed, seed+1, ...: replica r is the run with seed+r."""
    return [torch.Generator().manual_seed(seed + r) for r in range(replicas)]


class MLP:
    """weights[l-1] is W^l, shaped (fan_in, fan_out); biases[l-1] is b^l, shaped (fan_out,).

    Replica r draws its weights from generators[r], seeded seed + r; with replicas=R > 1 the network
    is batched: weights (R, fan_in, fan_out), biases (R, fan_out). The generators go on to draw each
    replica's data order (train), so one seed fixes a replica's whole run.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        init: str = "xavier_uniform",
        seed: int = 0,
        replicas: int = 1,
        init_gain: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {list(sizes)}")
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.replicas = replicas
        self.generators = replica_generators(seed, replicas)
        self.sizes = list(sizes)
        self.activation_name = activation
        self.activation = get_activation(activation)
        sample = get_init(init).sample
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            w = torch.stack([init_gain * sample(fan_in, fan_out, gen, dtype) for gen in self.generators])
            self.weights.append((w if self.batched else w[0]).to(device))
            bias_shape = (replicas, fan_out) if self.batched else (fan_out,)
            self.biases.append(torch.zeros(bias_shape, dtype=dtype, device=device))
        self.inputs: list[Tensor] = []  # h^{l-1} for each layer: what dW^l needs
        self.preacts: list[Tensor] = []  # z^l for each layer: what phi'(z^l) needs
        self.deltas: list[Tensor] = []  # dL/dz^l for each layer, set by backward

    @property
    def batched(self) -> bool:
        """Whether every tensor carries a leading replica dimension (replicas > 1)."""
        return self.replicas > 1

    @property
    def depth(self) -> int:
        return len(self.weights)

    def infer(self, x: Tensor) -> Tensor:
        """Logits for x, (B, fan_out) or (R, B, fan_out), keeping nothing for backward."""
        h = x
        for l, (w, b) in enumerate(zip(self.weights, self.biases, strict=True), start=1):
            z = affine(h, w, b)
            h = self.activation.fn(z) if l < self.depth else z
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Logits for x; keeps each layer's input and pre-activation for backward."""
        self.inputs, self.preacts = [], []
        h = x  # (B, sizes[0]) or (R, B, sizes[0])
        for l, (w, b) in enumerate(zip(self.weights, self.biases, strict=True), start=1):
            z = affine(h, w, b)  # (..., B, fan_out)
            self.inputs.append(h)
            self.preacts.append(z)
            h = self.activation.fn(z) if l < self.depth else z
        return h

    def backward(self, dlogits: Tensor) -> list[tuple[Tensor, Tensor]]:
        """[(dW^l, db^l) for l = 1..depth] from dlogits = dL/dlogits, (..., B, sizes[-1])."""
        if not self.preacts:
            raise RuntimeError("backward() needs a forward() first")
        grads: list[tuple[Tensor, Tensor]] = []
        deltas: list[Tensor] = []
        dz = dlogits  # (..., B, fan_out) of the last layer
        for l in range(self.depth, 0, -1):
            deltas.append(dz)
            dW = torch.matmul(self.inputs[l - 1].mT, dz)  # (..., fan_in, fan_out)
            db = dz.sum(-2)  # (..., fan_out)
            grads.append((dW, db))
            if l > 1:
                dh = torch.matmul(dz, self.weights[l - 1].mT)  # (..., B, fan_in) = dL/dh^{l-1}
                dz = dh * self.activation.grad(self.preacts[l - 2])  # dL/dz^{l-1}
        self.deltas = deltas[::-1]
        return grads[::-1]
