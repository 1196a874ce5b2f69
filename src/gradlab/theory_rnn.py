"""Mean-field theory of a vanilla RNN's gradient through time at init, and Pascanu et al.'s bound.

The cell a_t = x_t U + h_{t-1} W + b, h_t = phi(a_t), h_0 = 0 with Var(W_ij) = sigma_w^2 / width, Var(U_ij) =
sigma_u^2 / n_in and inputs of mean square q_x is gradlab.theory's plain network with one more source of length
per step: a wide cell's pre-activations are Gaussian with second moment

    q_1 = sigma_u^2 q_x + sigma_b^2                                   (h_0 = 0: only the input),
    q_t = sigma_w^2 E_z[phi(sqrt(q_{t-1}) z)^2] + sigma_u^2 q_x + sigma_b^2,    z ~ N(0, 1),

the length map with sigma_b^2 + sigma_u^2 q_x as its bias, settling at its fixed point q* (reached from q_1). The
back-propagated state dL/dh_{t-1} = (dL/dh_t phi'(a_t)) W^T shrinks or grows by sqrt(chi(q_t)) per step, chi =
sigma_w^2 E_z[phi'(sqrt(q_t) z)^2]; with readout "last" the gradient enters at T only, so

    state_grad_rms(t) / state_grad_rms(T) = prod_{k=t+1}^{T} sqrt(chi(q_k)),

and the per-step factor in the bulk is sqrt(chi(q*)). A linear cell with an orthogonal (or identity) W times
recurrent_gain carries it back by exactly |recurrent_gain| a step: W^T is recurrent_gain times an isometry. The
theory treats W on the way back as independent of W on the way forward (as for the MLP, Schoenholz et al. 2017;
for RNNs, Chen, Pennington and Schoenholz 2018); tests/test_rnn_theory.py checks it against simulated cells.

Pascanu, Mikolov and Bengio (2013): with |phi'| <= gamma, ||dL/dh_{t-1}|| <= lambda_1 gamma ||dL/dh_t||, lambda_1
the largest singular value of W, so lambda_1 < 1 / gamma is sufficient for the gradient to vanish (and lambda_1 >
1 / gamma necessary for it to explode). The spectral radius rho <= lambda_1, with equality for a normal W
(orthogonal, identity, each times a gain), so for those rho < 1 / gamma decides it; for a Gaussian W, lambda_1 is
about 2 rho and rho < 1 / gamma only makes vanishing likely, not certain.

An LSTM has no prediction here: its cell state is carried by gates, not by one length map.
"""

import functools
import math

import torch

from gradlab.activations import get_activation
from gradlab.theory import chi, length_map
from gradlab.theory_depth import as_limit, length_fixed_point

# Where max |phi'| is looked for: 0 and both sides of it, geometrically from 1e-12 to 60 (kinks at 0 seen from each
# side, as SELU's largest slope is at 0-; sup of softplus' is reached as z grows).
SLOPE_GRID = torch.logspace(-12, math.log10(60.0), 200_001, dtype=torch.float64)
VANISHES, NOT_RULED_OUT = "vanishing", "not ruled out"  # pascanu_side's answers


def input_length(sigma_u2: float, q_x: float, sigma_b2: float = 0.0) -> float:
    """q_1 = sigma_u^2 q_x + sigma_b^2: what the input and the bias add to the pre-activation's length every step."""
    return sigma_u2 * q_x + sigma_b2


def state_lengths(activation: str, steps: int, sigma_w2: float, sigma_u2: float, q_x: float,
                  sigma_b2: float = 0.0) -> list[float]:
    """[q_1, ..., q_T]: the pre-activations' second moment at each step (h_0 = 0)."""
    added = input_length(sigma_u2, q_x, sigma_b2)
    lengths = [added]
    for _ in range(steps - 1):
        lengths.append(length_map(activation, lengths[-1], sigma_w2, added))
    return lengths


def state_fixed_point(activation: str, sigma_w2: float, sigma_u2: float, q_x: float, sigma_b2: float = 0.0) -> float:
    """q*: where q_t settles, the length map's fixed point with bias sigma_u^2 q_x + sigma_b^2 reached from q_1; inf
    where q_t grows without bound (ReLU with sigma_w^2 >= 2, linear with sigma_w^2 >= 1)."""
    added = input_length(sigma_u2, q_x, sigma_b2)
    return length_fixed_point(activation, sigma_w2, added, added)


def step_factor(activation: str, q: float, sigma_w2: float) -> float:
    """sqrt(chi(q)): state_grad_rms(t-1) / state_grad_rms(t) where a_t has length q."""
    return math.sqrt(chi(activation, as_limit(q), sigma_w2))


def bulk_factor(activation: str, sigma_w2: float, sigma_u2: float, q_x: float, sigma_b2: float = 0.0) -> float:
    """sqrt(chi(q*)): the per-step factor of state_grad_rms once q_t has settled (at q*'s limit where it is 0 or
    inf)."""
    return step_factor(activation, state_fixed_point(activation, sigma_w2, sigma_u2, q_x, sigma_b2), sigma_w2)


def log10_state_grad_profile(activation: str, steps: int, sigma_w2: float, sigma_u2: float, q_x: float,
                             sigma_b2: float = 0.0) -> list[float]:
    """[log10 state_grad_rms(t) / state_grad_rms(T) for t = 1..T] at init with readout "last"."""
    lengths = state_lengths(activation, steps, sigma_w2, sigma_u2, q_x, sigma_b2)
    logs = [math.log10(step_factor(activation, q, sigma_w2)) for q in lengths[1:]]  # step t+1 -> t, at q_{t+1}
    to_last = [0.0]
    for log in reversed(logs):
        to_last.append(to_last[-1] + log)
    return to_last[::-1]


@functools.cache
def max_slope(activation: str) -> float:
    """gamma = sup_z |phi'(z)|, from the registry's phi' on SLOPE_GRID (1 for tanh, relu and linear; 1/4 for
    sigmoid)."""
    z = torch.cat([-SLOPE_GRID.flip(0), torch.zeros(1, dtype=torch.float64), SLOPE_GRID])
    return float(get_activation(activation).grad(z).abs().max())


def pascanu_bound(activation: str) -> float:
    """1 / max |phi'|: below it, a W's largest singular value makes the gradient vanish (Pascanu et al. 2013)."""
    return 1 / max_slope(activation)


def pascanu_side(activation: str, spectral_radius: float) -> str:
    """VANISHES where spectral_radius < 1 / max |phi'| (certain for a normal W, see the module), else NOT_RULED_OUT."""
    return VANISHES if spectral_radius < pascanu_bound(activation) else NOT_RULED_OUT
