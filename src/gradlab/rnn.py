"""A recurrent network whose backward pass through time is written by hand: a vanilla cell or an LSTM.

- vanilla: a_t = x_t U + h_{t-1} W + b,  h_t = phi(a_t),  h_0 = 0 (phi: any registered activation).
- lstm: [i, f, g, o] = x_t U + h_{t-1} W + b, four chunks of `width` in torch.nn.LSTM's gate order;
  c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),  h_t = sigmoid(o) tanh(c_t),  h_0 = c_0 = 0.
- readout "last": logits = h_T V + c, (B, n_out); "every": logits_t = h_t V + c, (B, T, n_out).

U is (n_in, G width), W (width, G width), b (G width,), V (width, n_out), c (n_out,); G = 1 (vanilla) or 4 (lstm).
`init` draws U and V (times `init_gain`), `recurrent_init` W (a registered init, or "identity": the IRNN of Le et
al. 2015), each gate's block on its own; `recurrent_gain` multiplies W; the forget gate's bias starts at
`forget_bias`. With `replicas=R > 1` every tensor gains a leading replica dimension, as gradlab.mlp's do, and inputs
are (R, B, T, n_in) (or (B, T, n_in), shared).
"""

import copy
from typing import NamedTuple

import torch
from torch import Tensor

from gradlab import per_example, rnn_stats
from gradlab.activations import get_activation
from gradlab.inits import get_init
from gradlab.measurement import Block, concat
from gradlab.mlp import replica_generators
from gradlab.network import Role
from gradlab.optim import Step

GATES = {"vanilla": 1, "lstm": 4}
READOUTS = ("last", "every")
SIGMOID, TANH = get_activation("sigmoid"), get_activation("tanh")


def identity(fan_in: int, fan_out: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """The IRNN's recurrent weights: W = I (draws nothing from gen)."""
    return torch.eye(fan_in, fan_out, dtype=dtype)


def recurrent_sampler(name: str):
    """The sampler of W's blocks: a registered init, or identity."""
    return identity if name == "identity" else get_init(name).sample


class RNNTrace(NamedTuple):
    logits: Tensor  # (..., B, n_out), or (..., B, T, n_out) with readout "every"
    x: Tensor  # the inputs, (..., B, T, n_in)
    a: Tensor  # the pre-activations a_t (all gates for an LSTM), (..., B, T, G width)
    h: Tensor  # h_0..h_T, (..., B, T + 1, width)
    gates: Tensor | None  # lstm: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o), (..., B, T, 4 width)
    c: Tensor | None  # lstm: c_0..c_T, (..., B, T + 1, width)


class RNNBackprop(NamedTuple):
    grads: list[Tensor]  # dU, dW, db, dV, dc: aligned with parameters()
    dh: Tensor  # dL/dh_t for t = 1..T, every path included, (..., B, T, width)
    da: Tensor  # dL/da_t, (..., B, T, G width)
    dc: Tensor | None  # lstm: dL/dc_t, (..., B, T, width)
    dlogits: Tensor  # what backprop was given: dL/dlogits


class RNN:
    """U, W, b, V, c as described above; replica r draws from generators[r], which go on to draw its data order."""

    family = "rnn"

    def __init__(self, n_in: int, width: int, n_out: int, cell: str = "vanilla", activation: str = "tanh",
                 init: str = "xavier_uniform", recurrent_init: str = "orthogonal", recurrent_gain: float = 1.0,
                 forget_bias: float = 1.0, readout: str = "last", seed: int = 0, replicas: int = 1,
                 init_gain: float = 1.0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        if cell not in GATES:
            raise ValueError(f"Unknown cell {cell!r}. Expect one of {sorted(GATES)}")
        if readout not in READOUTS:
            raise ValueError(f"Unknown readout {readout!r}. Expect one of {READOUTS}")
        self.generators = replica_generators(seed, replicas)
        self.n_in, self.width, self.n_out, self.cell, self.readout = n_in, width, n_out, cell, readout
        self.replicas, self.activation_name = replicas, activation
        self.activation = get_activation(activation) if cell == "vanilla" else TANH
        gates, sample, recurrent = GATES[cell], get_init(init).sample, recurrent_sampler(recurrent_init)

        def drawn(draw, fan_in: int, fan_out: int, blocks: int, gain: float = 1.0) -> Tensor:
            w = torch.stack([torch.cat([gain * draw(fan_in, fan_out, gen, dtype) for _ in range(blocks)], dim=1)
                             for gen in self.generators])
            return (w if self.batched else w[0]).to(device)

        self.U = drawn(sample, n_in, width, gates, init_gain)
        self.W = drawn(recurrent, width, width, gates, recurrent_gain)
        self.V = drawn(sample, width, n_out, 1, init_gain)
        lead = (replicas,) if self.batched else ()
        self.b = torch.zeros((*lead, gates * width), dtype=dtype, device=device)
        if cell == "lstm":
            self.b[..., width : 2 * width] = forget_bias
        self.c = torch.zeros((*lead, n_out), dtype=dtype, device=device)
        self.parameter_roles = [Role("input_weight", 1), Role("recurrent_weight", 1), Role("bias", 1),
                                Role("readout_weight", None), Role("readout_bias", None)]

    @property
    def batched(self) -> bool:
        return self.replicas > 1

    def parameters(self) -> list[Tensor]:
        """[U, W, b, V, c]."""
        return [self.U, self.W, self.b, self.V, self.c]

    def roles(self) -> list[Role]:
        return self.parameter_roles

    def trace(self, x: Tensor) -> RNNTrace:
        """The forward pass through time on x, (..., B, T, n_in): logits and every step's state."""
        inputs, h = self.inputs(x)  # x_t U + b for all t, h_0
        c, gates, pre = [torch.zeros_like(h[0])] if self.cell == "lstm" else None, [], []
        for t in range(x.shape[-2]):
            a = inputs[..., t, :] + torch.matmul(h[-1], self.W)  # (..., B, G width)
            pre.append(a)
            state, cell, gate = self.cell_step(a, c[-1] if c else None)
            h.append(state)
            if c:
                c.append(cell)
                gates.append(gate)
        states = torch.stack(h, dim=-2)  # (..., B, T + 1, width)
        return RNNTrace(self.readout_logits(states[..., -1, :] if self.readout == "last" else states[..., 1:, :]),
                        x, torch.stack(pre, dim=-2), states,
                        torch.stack(gates, dim=-2) if gates else None, torch.stack(c, dim=-2) if c else None)

    def inputs(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x_t U + b for every t at once, (..., B, T, G width), and [h_0]."""
        lead = (self.replicas, *x.shape[:-2]) if self.batched and x.dim() == 3 else x.shape[:-2]
        inputs = torch.matmul(x, self.U.unsqueeze(-3)) + self.b.unsqueeze(-2).unsqueeze(-2)
        return inputs, [torch.zeros((*lead, self.width), dtype=x.dtype, device=x.device)]

    def cell_step(self, a: Tensor, c_prev: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(h_t, c_t, the four gates) from the pre-activations a_t (and c_{t-1}); vanilla: (phi(a_t), None, None)."""
        if self.cell == "vanilla":
            return self.activation.fn(a), None, None
        width = self.width
        i, f, g, o = torch.sigmoid(a[..., :width]), torch.sigmoid(a[..., width : 2 * width]), \
            torch.tanh(a[..., 2 * width : 3 * width]), torch.sigmoid(a[..., 3 * width :])
        c = f * c_prev + i * g
        return o * torch.tanh(c), c, torch.cat([i, f, g, o], dim=-1)

    def readout_logits(self, shown: Tensor) -> Tensor:
        """h_T V + c from h_T (..., B, width), or h_t V + c for every t from (..., B, T, width)."""
        if self.readout == "last":
            return torch.matmul(shown, self.V) + self.c.unsqueeze(-2)
        return torch.matmul(shown, self.V.unsqueeze(-3)) + self.c.unsqueeze(-2).unsqueeze(-2)

    def infer(self, x: Tensor) -> Tensor:
        """Logits in evaluation mode (the same function as in training: an RNN has no batch statistics), keeping only
        the current state, so that a whole data set fits in memory."""
        inputs, (h,) = self.inputs(x)
        c, shown = torch.zeros_like(h) if self.cell == "lstm" else None, []
        for t in range(x.shape[-2]):
            h, c, _ = self.cell_step(inputs[..., t, :] + torch.matmul(h, self.W), c)
            if self.readout == "every":
                shown.append(h)
        return self.readout_logits(h if self.readout == "last" else torch.stack(shown, dim=-2))

    def backprop(self, trace: RNNTrace, dlogits: Tensor) -> RNNBackprop:
        """Backprop through time from dlogits = dL/dlogits: the gradients of [U, W, b, V, c] and each step's dL/dh_t,
        dL/da_t (and dL/dc_t)."""
        width, steps = self.width, trace.a.shape[-2]
        if self.readout == "last":
            shown, dshown = trace.h[..., -1, :], dlogits  # (..., B, width), (..., B, n_out)
            dV, dc_out = torch.matmul(shown.mT, dshown), dshown.sum(-2)
            from_readout = [None] * (steps - 1) + [torch.matmul(dlogits, self.V.mT)]
        else:
            shown = trace.h[..., 1:, :]  # (..., B, T, width)
            dV = torch.matmul(flat(shown).mT, flat(dlogits))
            dc_out = dlogits.sum((-3, -2))
            readout_grads = torch.matmul(dlogits, self.V.unsqueeze(-3).mT)  # (..., B, T, width)
            from_readout = list(readout_grads.unbind(-2))
        dh, da, dcell = [None] * steps, [None] * steps, [None] * steps
        carry, cell_carry = None, None  # dL/dh_t and dL/dc_t through step t + 1
        for t in range(steps - 1, -1, -1):
            parts = [g for g in (from_readout[t], carry) if g is not None]
            dh[t] = parts[0] if len(parts) == 1 else parts[0] + parts[1]
            if self.cell == "vanilla":
                da[t] = dh[t] * self.phi_slope(trace.a[..., t, :], trace.h[..., t + 1, :])
            else:
                da[t], dcell[t], cell_carry = lstm_step_backward(trace, t, dh[t], cell_carry, width)
            carry = torch.matmul(da[t], self.W.mT)
        dh_all, da_all = torch.stack(dh, dim=-2), torch.stack(da, dim=-2)
        dU = torch.matmul(flat(trace.x).mT, flat(da_all))
        dW = torch.matmul(flat(trace.h[..., :-1, :]).mT, flat(da_all))
        db = da_all.sum((-3, -2))
        return RNNBackprop([dU, dW, db, dV, dc_out], dh_all, da_all,
                           torch.stack(dcell, dim=-2) if self.cell == "lstm" else None, dlogits)

    def phi_slope(self, a: Tensor, phi_a: Tensor) -> Tensor:
        """phi'(a_t): from phi's output where the activation offers that, else from a_t."""
        from_output = self.activation.grad_from_output
        return self.activation.grad(a) if from_output is None else from_output(phi_a)

    def measure(self, trace: RNNTrace, back: RNNBackprop, grad_norms: Tensor, updates: Step) -> Block:
        """Per time step and whole-network statistics (gradlab.rnn_stats), and the gradient's noise across the batch
        (gradlab.per_example)."""
        noise = per_example.noise_block(self, trace, back, grad_norms)
        return concat(rnn_stats.step_stats(self, trace, back, grad_norms, updates), noise)

    def cast(self, dtype: torch.dtype) -> "RNN":
        """A copy of the network with every tensor in dtype (the same values, tensors of its own)."""
        twin = copy.copy(self)
        for name in ("U", "W", "b", "V", "c"):
            setattr(twin, name, getattr(self, name).to(dtype, copy=True))
        for kept in ("last_trace", "last_back"):
            twin.__dict__.pop(kept, None)
        return twin

    # The stateful API of gradlab.MLP: forward keeps the trace for backward.
    def forward(self, x: Tensor) -> Tensor:
        """Logits for x, (..., B, T, n_in); keeps the trace for backward()."""
        self.last_trace = self.trace(x)
        return self.last_trace.logits

    def backward(self, dlogits: Tensor) -> list[Tensor]:
        """[dU, dW, db, dV, dc] for the last forward()."""
        if not hasattr(self, "last_trace"):
            raise RuntimeError("backward() needs a forward() first")
        self.last_back = self.backprop(self.last_trace, dlogits)
        return self.last_back.grads

    def per_example_grad_sq_norms(self, trace: RNNTrace | None = None, back: RNNBackprop | None = None) -> Tensor:
        """||d loss_b / d theta_k||^2, (..., B, 5), of the last backward() (or of trace and back), where row b of its
        dlogits is d loss_b / d logits_b; exact, U's and W's through Gram matrices over time (gradlab.per_example)."""
        trace, back = trace or self.last_trace, back or self.last_back
        return per_example.rnn_sq_norms(self, trace, back)


def flat(t: Tensor) -> Tensor:
    """(..., B, T, n) as (..., B T, n): every example's every step as one row."""
    return t.reshape(*t.shape[:-3], t.shape[-3] * t.shape[-2], t.shape[-1])


def lstm_step_backward(trace: RNNTrace, t: int, dh: Tensor, cell_carry: Tensor | None,
                       width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Step t of an LSTM backward from dh = dL/dh_t: (dL/da_t for the four gates, dL/dc_t, dL/dc_{t-1}).

    With h_t = o tanh(c_t) and c_t = f c_{t-1} + i g: dc_t = cell_carry + dh o (1 - tanh(c_t)^2); then
    di = dc_t g, df = dc_t c_{t-1}, dg = dc_t i, do = dh tanh(c_t), each times its nonlinearity's slope at the gate,
    and dL/dc_{t-1} = dc_t f.
    """
    gates = trace.gates[..., t, :]
    i, f, g, o = (gates[..., k * width : (k + 1) * width] for k in range(4))
    c_prev, tanh_c = trace.c[..., t, :], torch.tanh(trace.c[..., t + 1, :])
    dc = dh * o * TANH.grad_from_output(tanh_c)
    if cell_carry is not None:
        dc = dc + cell_carry
    slope = SIGMOID.grad_from_output
    da = torch.cat([dc * g * slope(i), dc * c_prev * slope(f), dc * i * TANH.grad_from_output(g),
                    dh * tanh_c * slope(o)], dim=-1)
    return da, dc, dc * f
