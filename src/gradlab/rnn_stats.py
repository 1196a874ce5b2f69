"""The RNN's statistics (its `measure`), returned as data: per time step t = 1..T, rows keyed (1, t, name), and
whole-network rows keyed (None, None, name).

Per step: state_grad_rms (dL/dh_t), delta_rms (dL/da_t), grad_norm (||h_{t-1}^T delta_t||, step t's own share of
dL/dW), act_std and saturation of h_t (an LSTM's: of tanh(c_t)), and for an LSTM cell_grad_rms (dL/dc_t) and
forget_mean. A gradient of the batch-mean loss has rows (d loss_b / d h_b) / B, so its per-example rms
sqrt(mean_b ||d loss_b / d h_b||^2) is sqrt(B) times its Frobenius norm, as for the MLP's delta_rms. Whole network:
the gradient norm and update ratio of U, W and V.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gradlab.measurement import Block, concat
from gradlab.optim import Step, tensor_norms
from gradlab.stats import moments

if TYPE_CHECKING:  # the network calls these; they read only what it passes
    from gradlab.rnn import RNN, RNNBackprop, RNNTrace

WEIGHTS = ("input_weight", "recurrent_weight", "readout_weight")  # the roles of U, W and V


def per_example_rms(grad: Tensor) -> Tensor:
    """sqrt(mean_b ||d loss_b / d v_b||^2) per step from the batch-mean loss's gradient (..., B, T, n): (..., T), in
    float64 (a float32 norm squares its entries, and reads 0 below about 1e-21, while the state gradient goes on)."""
    return torch.linalg.vector_norm(grad.double(), dim=(-3, -1)) * math.sqrt(grad.shape[-3])


def time_rows(names: list[str], values: list[Tensor], replicas: int) -> Block:
    """Per-step rows (1, t, name) from values (..., T) per name: (R, T) batched or (T,)."""
    steps = values[0].shape[-1]
    keys = [(1, t, name) for name in names for t in range(1, steps + 1)]
    stacked = torch.stack([v.reshape(replicas, steps).T for v in values])  # (names, T, R)
    return Block(keys, stacked.double().reshape(len(keys), replicas))


def step_stats(net: RNN, trace: RNNTrace, back: RNNBackprop, grad_norms: Tensor, updates: Step) -> Block:
    """Every per-step and whole-network statistic from one forward and backward and the optimizer's step."""
    h_prev, states = trace.h[..., :-1, :], trace.h[..., 1:, :]  # (..., B, T, width)
    own_share = torch.einsum("...btw,...btg->...twg", h_prev.double(), back.da.double())  # h_{t-1}^T delta_t, per t
    spread = moments(states.movedim(-2, 0))[1]  # act_std per step: (T, ...)
    argument = trace.a if net.cell == "vanilla" else trace.c[..., 1:, :]  # an LSTM's h_t = o tanh(c_t): tanh's
    saturation = net.activation.saturated(argument).to(argument.dtype).mean((-3, -1))
    names = ["state_grad_rms", "delta_rms", "grad_norm", "act_std", "saturation"]
    values = [per_example_rms(back.dh), per_example_rms(back.da), torch.linalg.vector_norm(own_share, dim=(-2, -1)),
              spread.movedim(0, -1), saturation]
    if net.cell == "lstm":
        width = net.width
        names += ["cell_grad_rms", "forget_mean"]
        values += [per_example_rms(back.dc), trace.gates[..., width : 2 * width].mean((-3, -1))]
    positions = [i for kind in WEIGHTS for i, role in enumerate(net.roles()) if role.kind == kind]
    params = net.parameters()
    weight_norms = tensor_norms([params[i] for i in positions], net.batched).double()
    update_norms = updates.norms(positions, net.batched).double()
    whole_keys = [(None, None, f"{kind}_{name}") for name in ("grad_norm", "update_ratio") for kind in WEIGHTS]
    whole_values = torch.cat([grad_norms[positions].double(), update_norms / weight_norms])
    return concat(time_rows(names, values, net.replicas), Block(whole_keys, whole_values.reshape(-1, net.replicas)))
