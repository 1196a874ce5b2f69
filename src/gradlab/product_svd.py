"""Singular values of long matrix products, each to full relative accuracy, in log scale (no over- or underflow).

A product of many layers' Jacobians has singular values far apart: a 100-layer Gaussian net spans e^-260..1. An
explicit product followed by an SVD sees nothing below about 1e-16 of the largest (float64), so this module never
forms the product. It keeps it stratified (Loh et al. 1989; Stewart 1995): P = U diag(e^a) T, with U's columns
orthonormal, the scales as logs a, and T well conditioned. Each new factor A re-factorizes A U with a QR whose
columns are pre-pivoted by their scaled lengths, so that the scales stay graded. The singular values of
diag(e^a) T then come from a one-sided Jacobi SVD (Demmel and Veselic 1992), accurate to relative round-off for
graded matrices, run on columns kept as a log length and a unit vector; or from LAPACK directly, when the scales
span less than DIRECT_RANGE.

A direction that one factor maps to 0, or to below ZERO_GAIN of the factor's largest gain (a ReLU unit that is off
zeroes a row of its factor; layer norm's Jacobian has two null directions), is an exact zero, ln s = -inf, kept
apart from tiny values, which come from many factors' gains multiplied.

Matrices are (..., n, k): k columns (directions) of length n, any leading batch shape; everything is float64.
"""

import math

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64
DIRECT_RANGE = 20.0  # ln(s_max / s_min) up to which an explicit SVD of diag(e^a) T keeps 1e-8 relative accuracy
LAPACK_RANGE = 600.0  # up to which diag(e^{a - max a}) T is representable (no subnormals) for LAPACK's Jacobi SVD
SPREAD_BUDGET = math.log(1e4)  # ln of the condition a product may reach between two re-factorizations
MAX_UNFACTORED = 8  # factors multiplied at most between two re-factorizations
JACOBI_TOLERANCE = 1e-15  # columns count as orthogonal when |cos| between them is below this
MAX_SWEEPS = 40
ZERO_GAIN = 1e-13  # a factor's gain in a direction, relative to its largest, below which it annihilates it
TINY = torch.finfo(F64).tiny


def start(directions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The identity's stratified form for (..., n, k) orthonormal starting directions: (U, a, T) = (them, 0, I)."""
    k = directions.shape[-1]
    eye = torch.eye(k, dtype=F64, device=directions.device).expand(*directions.shape[:-2], k, k)
    return directions, directions.new_zeros(*directions.shape[:-2], k), eye.clone()


def graded_step(product: Tensor, a: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
    """The new factor A applied: from product = A U (..., n, k), the scales a (..., k) and T (..., k, m) of the
    old U diag(e^a) T, the new (U', a', T') with A U diag(e^a) T = U' diag(e^a') T', and the largest spread of
    ln |R_ii| over the live directions (about ln cond(A U)).

    Columns go into the QR in order of their scaled length |A u_j| e^{a_j} (pre-pivoting), and rows that are
    exactly 0 in every column go last, so that a direction the factor annihilates gets R_ii exactly 0 (or, where
    no row is 0, as layer norm's, below ZERO_GAIN of the factor's gain).
    T' = D'^-1 R D_P P^T T, whose entries R_ij / R_ii e^{a_j - a_i} are formed in log form.
    """
    lengths = torch.linalg.vector_norm(product, dim=-2)
    scaled = torch.where(a.isfinite() & (lengths > 0), lengths.clamp_min(TINY).log() + a, -math.inf)
    order = scaled.argsort(dim=-1, descending=True, stable=True)
    product = product.gather(-1, order.unsqueeze(-2).expand_as(product))
    a, t = a.gather(-1, order), t.gather(-2, order.unsqueeze(-1).expand_as(t))
    zero_rows = (product == 0).all(-1)
    if bool(zero_rows.any()):
        rows = zero_rows.to(torch.int8).argsort(dim=-1, stable=True)  # zero rows last
        q, r = torch.linalg.qr(product.gather(-2, rows.unsqueeze(-1).expand_as(product)))
        q = torch.empty_like(q).scatter_(-2, rows.unsqueeze(-1).expand_as(q), q)  # back in the rows' own order
    else:
        q, r = torch.linalg.qr(product)
    kept = r.shape[-2]
    diag = r.diagonal(dim1=-2, dim2=-1)
    gain = lengths.amax(-1, keepdim=True)  # about the factor's largest gain: U's columns are orthonormal
    live = (diag.abs() > ZERO_GAIN * gain) & a[..., :kept].isfinite()
    a_new = torch.where(live, diag.abs().clamp_min(TINY).log() + a[..., :kept], -math.inf)
    ratio = r / torch.where(live, diag, 1.0).unsqueeze(-1)  # R_ij / R_ii: the sign of R_ii goes with it
    graded = ratio * scale_ratios(a, torch.where(live, a[..., :kept], -math.inf))
    sign = torch.where(diag < 0, -1.0, 1.0).to(F64)
    gains = diag.abs().clamp_min(TINY).log()
    spread = torch.where(live, gains, -math.inf).amax(-1) - torch.where(live, gains, math.inf).amin(-1)
    return q * sign.unsqueeze(-2), a_new, graded @ t, float(spread.nan_to_num(0.0, 0.0, 0.0).amax())


def scale_ratios(a: Tensor, rows: Tensor) -> Tensor:
    """e^{a_j - rows_i}, (..., len(rows), len(a)), 0 where either is -inf: as an outer product of two exponentials
    about the largest scale where the scales span less than float64 holds, else entry by entry (capped)."""
    finite_a, finite_rows = a.isfinite(), rows.isfinite()
    top = torch.where(finite_a, a, -math.inf).amax(-1, keepdim=True).nan_to_num(neginf=0.0)
    low = torch.where(finite_rows, rows, math.inf).amin(-1, keepdim=True).nan_to_num(posinf=0.0)
    if float((top - low).max()) < 600:
        columns = torch.where(finite_a, (a - top).exp(), 0.0)
        row_scales = torch.where(finite_rows, (top - rows).exp(), 0.0)
        return row_scales.unsqueeze(-1) * columns.unsqueeze(-2)
    exponent = torch.where(finite_a.unsqueeze(-2) & finite_rows.unsqueeze(-1), a.unsqueeze(-2) - rows.unsqueeze(-1),
                           -math.inf)
    return exponent.clamp_max(700).exp()


def log_singular_values(a: Tensor, t: Tensor) -> Tensor:
    """ln s of diag(e^a) T, (..., k), largest first; -inf for exact zeros (a_i = -inf).

    Scales that span little: LAPACK's SVD of the explicit matrix. Up to LAPACK_RANGE: LAPACK's preconditioned
    Jacobi SVD (xGEJSV, Drmac and Veselic 2008), accurate to relative round-off for a column-scaled well
    conditioned matrix, which torch does not offer. Beyond: the same method in log form here (jacobi_log_svd).
    """
    finite = a.isfinite()
    top = torch.where(finite, a, -math.inf).amax(-1, keepdim=True).nan_to_num(neginf=0.0)
    spread = float((top - torch.where(finite, a, math.inf).amin(-1, keepdim=True).nan_to_num(posinf=0.0)).max())
    if spread <= DIRECT_RANGE:
        return direct_log_svd(a, t, top)
    if spread <= 2 * DIRECT_RANGE and t.shape[-1] == t.shape[-2] and bool(finite.all()):
        return two_sided_log_svd(a, t, top)
    if spread <= LAPACK_RANGE:
        return lapack_log_svd(a, t, top)
    return jacobi_log_svd(a, t)


def two_sided_log_svd(a: Tensor, t: Tensor, top: Tensor) -> Tensor:
    """For scales that span up to 2 DIRECT_RANGE, square and invertible: the larger half of the singular values
    from LAPACK's SVD of M = diag(e^a) T, the smaller from that of M^-1 = T^-1 diag(e^-a), each scaled to its
    largest (s_i(M) = 1 / s_{k+1-i}(M^-1)); each value is taken where it lies within DIRECT_RANGE of the top."""
    large = direct_log_svd(a, t, top)
    bottom = a.amin(-1, keepdim=True)
    inverse = torch.linalg.inv(t) * (bottom - a).exp().unsqueeze(-2)  # columns scaled by e^{-a_j}, top e^{-bottom}
    small = -(torch.linalg.svdvals(inverse).clamp_min(TINY).log() - bottom).flip(-1)
    return torch.where(large >= top - DIRECT_RANGE, large, small)


def lapack_log_svd(a: Tensor, t: Tensor, top: Tensor) -> Tensor:
    """LAPACK's xGEJSV on each matrix's live columns x_j = e^{a_j - top} t_j of T^T diag(e^{a - top})."""
    from scipy.linalg.lapack import dgejsv  # 0.15 s of imports, paid only by a spectrum that needs it
    logs = torch.full_like(a, -math.inf)
    flat_a, flat_t, flat_top = a.reshape(-1, a.shape[-1]), t.reshape(-1, *t.shape[-2:]), top.reshape(-1)
    flat_logs = logs.reshape(-1, a.shape[-1])
    for i, (scales, rows, scale_top) in enumerate(zip(flat_a.cpu(), flat_t.cpu(), flat_top.cpu(), strict=True)):
        live = scales.isfinite()
        columns = (rows[live].T * (scales[live] - scale_top).exp()).numpy()
        values, *_, work, _, info = dgejsv(np.asfortranarray(columns), joba=1, jobu=3, jobv=3)
        if info != 0:
            raise RuntimeError(f"LAPACK's dgejsv failed (info {info})")
        found = torch.from_numpy(np.log(values * (work[0] / work[1]))).sort(descending=True).values
        flat_logs[i, : len(found)] = found.to(a.device) + scale_top
    return logs


def direct_log_svd(a: Tensor, t: Tensor, top: Tensor) -> Tensor:
    """LAPACK's SVD of diag(e^{a - top}) T, where the scales span little: its zeros where a is -inf."""
    values = torch.linalg.svdvals(t * (a - top).exp().unsqueeze(-1)).clamp_min(TINY).log() + top  # largest first
    zeros = a.isinf().sum(-1, keepdim=True)
    rank = torch.arange(a.shape[-1], device=a.device)
    return torch.where(rank >= a.shape[-1] - zeros, -math.inf, values[..., : a.shape[-1]])


def jacobi_log_svd(a: Tensor, t: Tensor) -> Tensor:
    """One-sided Jacobi on the columns x_j = e^{a_j} t_j of X = T^T diag(e^a): rotate pairs of columns until all
    are orthogonal; the singular values are then the columns' lengths. A column is kept as (ln |x_j|, x_j/|x_j|)."""
    vectors = t.transpose(-1, -2).clone()  # (..., m, k)
    lengths = torch.linalg.vector_norm(vectors, dim=-2)
    alive = a.isfinite() & (lengths > 0)
    logs = torch.where(alive, a + lengths.clamp_min(TINY).log(), -math.inf)
    vectors = vectors / lengths.clamp_min(TINY).unsqueeze(-2)
    rounds = round_robin(a.shape[-1])
    for _ in range(MAX_SWEEPS):
        if not any([rotate(vectors, logs, p, q) for p, q in rounds]):  # a list: every round runs
            break
    return logs.sort(dim=-1, descending=True).values


def rotate(vectors: Tensor, logs: Tensor, p: Tensor, q: Tensor) -> bool:
    """One Jacobi rotation for each pair (p_i, q_i), in place; whether any pair was not yet orthogonal.

    For x_p = e^{a_p} v_p and x_q = e^{a_q} v_q (unit v), with rho = v_p . v_q and d = a_p - a_q: zeta =
    (|x_q|^2 - |x_p|^2) / (2 x_p . x_q) = -sinh(d) / rho, t = sign(zeta) / (|zeta| + sqrt(1 + zeta^2)),
    c = 1 / sqrt(1 + t^2), s = c t; x_p' = c x_p - s x_q = e^{a_p} (c v_p - s e^{-d} v_q) and
    x_q' = s x_p + c x_q = e^{a_q} (s e^{d} v_p + c v_q). |t| = e^{-asinh|zeta|} is taken in log form, so that
    s e^{+-d} stays finite however far apart the two lengths are.
    """
    v_p, v_q, a_p, a_q = vectors[..., p], vectors[..., q], logs[..., p], logs[..., q]
    rho = (v_p * v_q).sum(-2)
    turn = a_p.isfinite() & a_q.isfinite() & (rho.abs() > JACOBI_TOLERANCE)
    if not bool(turn.any()):
        return False
    d = torch.where(turn, a_p - a_q, 0.0)
    rho = torch.where(turn, rho, 1.0)
    log_zeta = log_abs_sinh(d) - rho.abs().log()
    sign = torch.where(d == 0, 1.0, -torch.sign(d)) * torch.sign(rho)
    log_t = -asinh_of_exp(log_zeta)
    c = torch.rsqrt(1 + (2 * log_t).exp())
    up = torch.where(turn, sign * c * (log_t - d).clamp_max(700).exp(), 0.0)  # s e^{-d}
    down = torch.where(turn, sign * c * (log_t + d).clamp_max(700).exp(), 0.0)  # s e^{d}
    c = torch.where(turn, c, 1.0)
    new_p = c.unsqueeze(-2) * v_p - up.unsqueeze(-2) * v_q
    new_q = down.unsqueeze(-2) * v_p + c.unsqueeze(-2) * v_q
    for index, new, old in ((p, new_p, a_p), (q, new_q, a_q)):
        length = torch.linalg.vector_norm(new, dim=-2).clamp_min(TINY)
        vectors[..., index] = new / length.unsqueeze(-2)
        logs[..., index] = torch.where(turn, old + length.log(), old)
    return True


def round_robin(k: int) -> list[tuple[Tensor, Tensor]]:
    """The circle method: k - 1 rounds (k rounded up to even) of disjoint pairs covering every pair once."""
    n = k + k % 2
    players, rounds = list(range(n)), []
    for _ in range(n - 1):
        pairs = [(min(players[i], players[n - 1 - i]), max(players[i], players[n - 1 - i])) for i in range(n // 2)]
        pairs = [(p, q) for p, q in pairs if q < k]  # k odd: the extra player sits out
        rounds.append((torch.tensor([p for p, _ in pairs]), torch.tensor([q for _, q in pairs])))
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def log_abs_sinh(x: Tensor) -> Tensor:
    x = x.abs()
    return torch.where(x > 20, x - math.log(2), torch.sinh(x.clamp_max(20)).clamp_min(TINY).log())


def asinh_of_exp(y: Tensor) -> Tensor:
    """asinh(e^y), for y as large as it comes."""
    return torch.where(y > 20, y + math.log(2), torch.asinh(y.clamp_max(20).exp()))


def product_log_singular_values(factors: list, directions: Tensor) -> Tensor:
    """ln s of A_L ... A_1 Q0 for linear maps `factors` (each takes (..., n, k) to (..., n', k)), applied in order
    to the orthonormal starting directions Q0: (..., min(k, every n)), largest first.

    Factors are multiplied in blocks and each block's product re-factorized (graded_step) once: a block stops
    when a row comes out exactly 0 (an exact zero to keep exact), or when it holds as many factors as the last
    block's spread of gains per factor allows within SPREAD_BUDGET, before round-off could blur its weakest
    direction (ln cond 9.2: about 1e-12 relative error per block)."""
    u, a, t = start(directions)
    block, allowed = 0, 1
    for factor in factors:
        u, block = factor(u), block + 1
        if block >= allowed or bool((u == 0).all(-1).any()) or u.shape[-2] < u.shape[-1]:
            u, a, t, spread = graded_step(u, a, t)
            allowed = max(1, min(MAX_UNFACTORED, int(SPREAD_BUDGET * block / max(spread, 1e-9))))
            block = 0
    if block:
        u, a, t, _ = graded_step(u, a, t)
    return log_singular_values(a, t)
