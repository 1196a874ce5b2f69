"""The network protocol: everything the training loop (gradlab.train) needs of a network family, and nothing more.

A family (gradlab.mlp.MLP) computes a forward pass that returns its trace instead of leaving it on the object,
a backward pass from that trace, and its own statistics from both:

    trace = net.trace(x)                                  # training mode: trace.logits, (..., B, n_out)
    back = net.backprop(trace, dlogits)                   # back.grads aligned with net.parameters()
    rows = net.measure(trace, back, grad_norms, updates)  # a Block of (layer, time, name) rows

Each parameter has a named role (net.roles(), aligned with parameters()), so that callers pick tensors by
what they are, never by their position. A family that also measures its input-output Jacobian's spectrum
(gradlab.jacobian) offers the methods of `HasJacobian`. gradlab.networks registers every family by name.
"""

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from gradlab.measurement import Block
from gradlab.optim import Step


class Role(NamedTuple):
    """What a parameter is: its kind ('weight', 'bias', 'norm_weight', ...) and the layer it belongs to."""

    kind: str
    layer: int | None = None  # None: the parameter belongs to no one layer


class Trace(Protocol):
    logits: Tensor  # (..., B, n_out)


class Backprop(Protocol):
    grads: list[Tensor]  # the gradient of each of parameters(), in its order


class Network(Protocol):
    family: str  # the name it is registered under in gradlab.networks.NETWORKS
    replicas: int  # R independently initialized copies, trained as one batched computation
    generators: list[torch.Generator]  # replica r's weights and data order

    @property
    def batched(self) -> bool: ...  # every tensor carries a leading replica dimension (replicas > 1)

    def parameters(self) -> list[Tensor]: ...

    def roles(self) -> list[Role]: ...  # aligned with parameters()

    def trace(self, x: Tensor) -> Trace: ...  # the forward pass in training mode, and what backward needs

    def backprop(self, trace: Trace, dlogits: Tensor) -> Backprop: ...  # dlogits = dL/dlogits, (..., B, n_out)

    def infer(self, x: Tensor) -> Tensor: ...  # logits in evaluation mode

    def measure(self, trace: Trace, back: Backprop, grad_norms: Tensor, updates: Step) -> Block: ...


class HasJacobian(Protocol):
    """A family whose input-output Jacobian gradlab.jacobian measures, as a product of per-layer linear maps."""

    def cast(self, dtype: torch.dtype) -> "HasJacobian": ...  # a copy in dtype, the same values

    def per_replica(self, x: Tensor) -> Tensor: ...  # inputs as every replica sees them

    def tangent_steps(self, x: Tensor) -> list[Callable[[Tensor], Tensor]]: ...  # the layers' maps, in order


def indices(roles: list[Role], kind: str) -> slice | list[int]:
    """The positions in parameters() of every parameter of this kind, in order: a slice where they are contiguous
    (an MLP's are), so that picking them from a list or a tensor of norms copies nothing."""
    found = [i for i, role in enumerate(roles) if role.kind == kind]
    if not found:
        return slice(0, 0)
    contiguous = found == list(range(found[0], found[-1] + 1))
    return slice(found[0], found[-1] + 1) if contiguous else found
