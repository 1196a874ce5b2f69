"""Depth scales of a wide plain network at init (Schoenholz et al. 2017, "Deep Information Propagation").

Weights of variance sigma_w^2 / fan_in and biases of variance sigma_b^2 map a length q and, for two inputs a and b,
their correlation c = q^{ab} / q, layer by layer (gradlab.theory holds the length map):

    q^l = sigma_w^2 E[phi(u)^2] + sigma_b^2,                    u ~ N(0, q^{l-1}),
    c^l = (sigma_w^2 E[phi(u_a) phi(u_b)] + sigma_b^2) / q*,    (u_a, u_b) ~ N(0, q* [[1, c^{l-1}], [c^{l-1}, 1]]).

q* and c* are their fixed points. Near them q and c settle with the maps' slopes per layer: chi_q, the length map's
slope at q*, and chi_c = sigma_w^2 E[phi'(u_a) phi'(u_b)] at c*, so |q^l - q*| ~ e^{-l / xi_q} and
|c^l - c*| ~ e^{-l / xi_c} with xi = -1 / ln chi. chi_1 = sigma_w^2 E[phi'(u)^2] at q* is chi_c at c = 1, the
per-layer gain of the squared back-propagated signal, and it sets the phase: ordered (chi_1 < 1: c* = 1, chi_c =
chi_1), chaotic (chi_1 > 1: c* < 1), or the edge of chaos (chi_1 = 1: xi_c infinite). Schoenholz et al. find that
networks train up to a depth of about 6 xi_c.

Expectations of one Gaussian use gradlab.theory's exp-sinh rule. The joint one integrates that rule twice: u_a =
sqrt(q) z_1 outside, and inside u_b given u_a, N(c u_a, q (1 - c^2)), folded about its kink at u_b = 0 when 0 lies
within TAIL standard deviations of the mean, else about the mean; so it stays exact (1e-11 against ReLU's
arc-cosine kernels) for c up to 1 - 1e-10. tests/test_depth_scales.py checks both.
"""

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from gradlab.activations import get_activation
from gradlab.theory import SMALLEST, TAIL, chi, gaussian_expectation, length_map

LENGTH_GRID = 2.0 ** torch.arange(-50, 51, dtype=torch.float64)  # 1e-15 .. 1e15: where q* is looked for
Q_ZERO, Q_INFINITE = 1e-18, 1e24  # where chi is evaluated for q* = 0 (the limit q -> 0+) and q* = inf
CRITICAL = 1e-10  # |chi - 1| below this is criticality: the quadrature's accuracy
INNER_STEP = 0.04  # the inside rule's step in t: 1e-11 against ReLU's kernels (STEP, 0.02: 3e-13 at 3x the time)
JUMP = 0.01  # chi_1 changing more than this across 2e-9 of sigma_w^2 is no edge of chaos: q* jumps there
BISECTIONS = 45  # halvings of the bracket of the edge of chaos (a factor 1e7): 1e-12 relative
SECTIONS, ROUNDS = 16, 11  # q*'s bracket (a factor 2) shrinks 16-fold a round: 1e-13 relative after 11
NEWTON_TOLERANCE = 1e-12
SIGMA_W2_RANGE = (1e-3, 1e4)  # where the edge of chaos is looked for


class DepthScales(NamedTuple):
    """Schoenholz et al.'s quantities; q_star = inf (the length grows without bound) leaves all but chi_1 nan."""

    q_star: float
    chi_1: float
    c_star: float
    chi_c: float
    chi_q: float
    xi_q: float
    xi_c: float


def depth_scale(chi: float) -> float:
    """xi = -1 / ln chi: the depth over which a deviation shrinks e-fold; infinite at chi >= 1 (criticality)."""
    if math.isnan(chi):
        return math.nan
    return math.inf if chi >= 1 - CRITICAL else 0.0 if chi <= 0 else -1 / math.log(chi)


def bisect(f: Callable[[float], bool], lo: float, hi: float, log: bool = False) -> float:
    """The point where f switches from False (at lo) to True (at hi), after BISECTIONS halvings (of log x if log)."""
    for _ in range(BISECTIONS):
        mid = math.sqrt(lo * hi) if log else 0.5 * (lo + hi)
        lo, hi = (lo, mid) if f(mid) else (mid, hi)
    return math.sqrt(lo * hi) if log else 0.5 * (lo + hi)


def crossing(past: Callable[[Tensor], Tensor], near: float, far: float) -> float:
    """Where `past` (vectorized) turns true going from near, where it is false, to far, where it is true: SECTIONS
    geometric points a round, each round keeping the one section where it turns."""
    for _ in range(ROUNDS):
        points = near * (far / near) ** (torch.arange(1, SECTIONS + 1, dtype=torch.float64) / SECTIONS)
        first = int(past(points).int().argmax())  # the last point is `far`: true
        near, far = (near if first == 0 else float(points[first - 1])), float(points[first])
    return math.sqrt(near * far)


def length_fixed_point(activation: str, sigma_w2: float, sigma_b2: float = 0.0, q0: float = 1.0) -> float:
    """q*: where the length map iterated from q0 ends; 0 or inf when it leaves LENGTH_GRID's range.

    Every registered phi has phi(u)^2 + phi(-u)^2 increasing in |u|, so the map L(q) is nondecreasing and its
    iterates move monotonically, in the direction of L(q0) - q0, to the nearest fixed point on that side: the first
    q on that side with L(q) - q of the other sign. It is bracketed on LENGTH_GRID (factors of 2), then narrowed by
    `crossing` to 1e-13.
    """
    start = length_map(activation, q0, sigma_w2, sigma_b2)
    if abs(start - q0) <= CRITICAL * q0:  # q0 is fixed already (every q is, for ReLU with sigma_w^2 = 2, no bias)
        return q0
    rising = start > q0

    def past(q: Tensor) -> Tensor:
        lengths = length_map(activation, q, sigma_w2, sigma_b2)
        return lengths <= q if rising else lengths >= q

    grid = LENGTH_GRID[LENGTH_GRID > q0] if rising else LENGTH_GRID[LENGTH_GRID < q0].flip(0)
    beyond = past(grid)
    if not beyond.any():
        return math.inf if rising else 0.0
    first = int(beyond.int().argmax())
    return crossing(past, q0 if first == 0 else float(grid[first - 1]), float(grid[first]))


def as_limit(q: float) -> float:
    """q = 0 and q = inf read as their limits (a kink at 0 seen from both sides), for chi_1 at q*."""
    return min(max(q, Q_ZERO), Q_INFINITE)


def length_map_slope(activation: str, q: float, sigma_w2: float) -> float:
    """dL/dq = sigma_w^2 E[u phi(u) phi'(u)] / q (Gaussian integration by parts; needs no phi'')."""
    phi, q = get_activation(activation), max(q, Q_ZERO)
    return sigma_w2 * gaussian_expectation(lambda u: u * phi.fn(u) * phi.grad(u), q) / q


def conditional_expectation(g: Callable[[Tensor], Tensor], mean: Tensor, var: float) -> Tensor:
    """E[g(u)] for u ~ N(mean_i, var), each mean: the exp-sinh rule folded about u = 0 (g's kink or bump) when that
    lies within TAIL standard deviations of the mean, else about the mean, where g is smooth."""
    centre = torch.where(mean.abs() > TAIL * math.sqrt(var), mean, 0.0)[:, None]
    scale = ((mean[:, None] - centre) ** 2 + var).sqrt()  # >= sd, and >= |mean| / TAIL when folded about 0
    t = torch.arange(math.asinh(2 / math.pi * math.log(SMALLEST)), math.asinh(2 / math.pi * math.log(TAIL + 1)),
                     INNER_STEP, dtype=torch.float64)
    v = torch.exp(math.pi / 2 * torch.sinh(t))
    weights = (math.pi / 2) * torch.cosh(t) * v * INNER_STEP * scale / math.sqrt(2 * math.pi * var)  # du = scale dv
    right, left = centre + scale * v, centre - scale * v

    def density(u: Tensor) -> Tensor:
        return torch.exp(-0.5 * (u - mean[:, None]) ** 2 / var)

    return ((g(right) * density(right) + g(left) * density(left)) * weights).sum(-1)


def joint_expectation(f: Callable[[Tensor], Tensor], g: Callable[[Tensor], Tensor], q: float, c: float) -> float:
    """E[f(u_a) g(u_b)] for (u_a, u_b) ~ N(0, q [[1, c], [c, 1]]): outside over u_a, inside over u_b given u_a."""
    if c >= 1:
        return gaussian_expectation(lambda u: f(u) * g(u), q)
    var = q * (1 - c * c)

    def given_u_a(u: Tensor) -> Tensor:
        return f(u) * conditional_expectation(g, c * u.reshape(-1), var).reshape(u.shape)

    return gaussian_expectation(given_u_a, q)


def correlation_fixed_point(activation: str, q_star: float, sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """(c*, chi_c) in the chaotic phase: the root below 1 of C(c) - c, by Newton's method from c = 0.

    C(c) has a power series in c with nonnegative coefficients (Mehler), so C(c) - c is convex on [0, 1], >= 0
    at 0, 0 at 1 and rising there (chi_1 > 1): Newton from 0 climbs to the one root below 1 without overshooting.
    Its slope is C'(c) = sigma_w^2 E[phi'(u_a) phi'(u_b)] = chi_c(c) (Price's theorem).
    """
    phi, c = get_activation(activation), 0.0
    for _ in range(100):
        gap = (sigma_w2 * joint_expectation(phi.fn, phi.fn, q_star, c) + sigma_b2) / q_star - c
        chi_c = sigma_w2 * joint_expectation(phi.grad, phi.grad, q_star, c)
        step = gap / (1 - chi_c) if chi_c < 1 else 0.0
        c = min(c + step, 1.0)
        if abs(step) < NEWTON_TOLERANCE:
            break
    return c, chi_c


@functools.cache
def depth_scales(activation: str, sigma_w2: float, sigma_b2: float = 0.0, q0: float = 1.0) -> DepthScales:
    """q*, chi_1, c*, chi_c, chi_q, xi_q, xi_c of a plain network (q* reached from q0, see length_fixed_point)."""
    q_star = length_fixed_point(activation, sigma_w2, sigma_b2, q0)
    chi_1 = chi(activation, as_limit(q_star), sigma_w2)
    if math.isinf(q_star):  # no fixed point: the length grows, at the rate chi_1 of its limit q -> inf
        return DepthScales(q_star, chi_1, math.nan, math.nan, math.nan, math.nan, math.nan)
    c_star, chi_c = (1.0, chi_1) if chi_1 <= 1 else correlation_fixed_point(activation, q_star, sigma_w2, sigma_b2)
    chi_q = length_map_slope(activation, q_star, sigma_w2)
    return DepthScales(q_star, chi_1, c_star, chi_c, chi_q, depth_scale(chi_q), depth_scale(chi_c))


@functools.cache
def critical_sigma_w2(activation: str, sigma_b2: float = 0.0, q0: float = 1.0) -> float | None:
    """The edge of chaos: the sigma_w^2 where chi_1 = 1, by bisection in log sigma_w^2 over SIGMA_W2_RANGE.

    None where there is none: chi_1 stays below 1, or it jumps over 1 because q* itself jumps (the length map's
    iterates from q0 switch between sinking to 0 and growing without bound, as GELU's do without a bias).
    """
    def chi_1(sigma_w2: float) -> float:
        return chi(activation, as_limit(length_fixed_point(activation, sigma_w2, sigma_b2, q0)), sigma_w2)

    lo, hi = SIGMA_W2_RANGE
    if chi_1(lo) > 1 or chi_1(hi) <= 1:
        return None
    edge = bisect(lambda sigma_w2: chi_1(sigma_w2) > 1, lo, hi, log=True)
    return edge if chi_1(edge * (1 + 1e-9)) - chi_1(edge * (1 - 1e-9)) < JUMP else None
