"""Figures 10 and 11, the input-output Jacobian J = d h^{depth-1} / d x (dynamical isometry: Saxe et al. 2014,
Pennington et al. 2017): each draws one panel, no I/O.

Figure 10 takes spectra rows (run, singular_value, the run's facets and series labels): every singular value of
every measured example at init. Every panel holds one init, so its histograms are all drawn solid: a dash pattern
would break up the steps. Figure 11 takes metric rows named jac_log_sv_mean and jac_isometry, and draws the lines of
every panel solid too.
"""

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.offsetbox import AnchoredOffsetbox, HPacker, TextArea, VPacker
from matplotlib.ticker import LogLocator, NullFormatter

from analysis.style import (
    DIVERGED_LABEL,
    by_series,
    draw_series,
    mark_divergence,
    say_empty,
    series_color,
    small_legend,
)
from gradlab.jacobian import ISOMETRY_BAND

BIN_STEP = 2 / 3  # bin width in log2 units: three bins across the band [0.5, 2], s = 1 in the middle one
MAX_DECADES = 60  # the widest x axis (exact spectra of deep nets span 50 decades); beyond, counted in the panel
MIN_BINS = (-4, 7)  # the narrowest axis, in bins from 0.5: about 0.1 to 10, the band well inside
NO_SPECTRA = ("no Jacobian spectra: jacobian.examples=0, depth 1, or runs recorded before J was measured")
BAND_LABEL = f"isometry band [{ISOMETRY_BAND[0]:g}, {ISOMETRY_BAND[1]:g}]"
HEADROOM = 1.3  # the y axis over the highest outline: the shares' lines sit above the outlines
BAND = {"color": "#f2b632", "alpha": 0.45, "linewidth": 0, "zorder": 0}  # strong enough to see at 24 decades


def spectrum_bins(values: np.ndarray) -> np.ndarray:
    """Bin edges 0.5 * 2^(k BIN_STEP) over the positive values, at least MIN_BINS, at most MAX_DECADES wide: where
    the values reach further, the window that holds MIN_BINS and the most of them. Figure 10's panels share them."""
    positive = values[np.isfinite(values) & (values > 0)]
    position = (np.log2(positive) + 1) / BIN_STEP  # in bins from 0.5
    low = min(math.floor(position.min()), MIN_BINS[0]) if len(positive) else MIN_BINS[0]
    high = max(math.ceil(position.max()), MIN_BINS[1]) if len(positive) else MIN_BINS[1]
    width = round(MAX_DECADES * math.log2(10) / BIN_STEP)
    if high - low > width:
        counts = np.bincount(np.floor(position - low).astype(int).clip(0, high - low - 1), minlength=high - low)
        held = np.convolve(counts, np.ones(width), "valid")  # values in the window that starts at low + i
        starts = np.arange(len(held)) + low
        allowed = (starts <= MIN_BINS[0]) & (starts + width >= MIN_BINS[1])  # 0.1 .. 10: the band off the edges
        low = int(starts[allowed][np.argmax(held[allowed])])
        high = low + width
    return ISOMETRY_BAND[0] * 2 ** (BIN_STEP * np.arange(low, high + 1))


def spectrum_shares(values: np.ndarray, bins: np.ndarray) -> dict[str, float]:
    """The shares of the singular values in the band, below and above the axis (the bins), and exactly 0."""
    low, high = ISOMETRY_BAND
    return {f"in {BAND_LABEL.split('band ')[1]}": np.mean((values >= low) & (values <= high)),
            "below the axis": np.mean((values > 0) & (values < bins[0])), "above the axis": np.mean(values > bins[-1]),
            "exactly 0": np.mean(values == 0)}


def shares_box(ax: Axes, shares: list[tuple[tuple, dict[str, float]]]) -> None:
    """In the upper left, a line per kind of share (the band's, and the others where a series has some), each
    series' share in its color, lightest first as in the legend."""
    lines = []
    for index, kind in enumerate(shares[0][1]):
        if index and not any(own[kind] >= 0.005 for _, own in shares):  # shown as 0%
            continue
        items = [TextArea(f"{own[kind]:.0%}", textprops={"color": color, "size": "x-small"}) for color, own in shares]
        lines.append(HPacker(children=[TextArea(f"{kind}:", textprops={"color": "0.2", "size": "x-small"}), *items],
                             sep=4, pad=0, align="baseline"))
    ax.add_artist(AnchoredOffsetbox("upper left", child=VPacker(children=lines, sep=2, pad=0), frameon=False,
                                    pad=0.2, borderpad=0.3))


def spectrum_histograms(df: pd.DataFrame, ax: Axes, bins: np.ndarray | None = None) -> None:
    """Figure 10: the distribution of J's singular values at init, one outline per series (seeds pooled), as a
    share of all singular values per decade, over bins shared by the panels (spectrum_bins). In the upper left,
    each series' share in the band, and those beyond the axis or exactly 0 (dead ReLU paths)."""
    values = df.singular_value.to_numpy(float)
    if not np.any(np.isfinite(values) & (values > 0)):
        say_empty(ax, "no nonzero singular values")
        return
    bins = spectrum_bins(values) if bins is None else bins
    ax.axvspan(*ISOMETRY_BAND, **BAND, label=BAND_LABEL)
    ax.axvline(1.0, color="0.4", linewidth=0.8)
    highest, shares = 0.0, []
    for series, rows in by_series(df):
        own = rows.singular_value.to_numpy(float)
        counts, _ = np.histogram(own[np.isfinite(own) & (own > 0)], bins)
        density = counts / len(own) / np.diff(np.log10(bins))
        color = series_color(rows.activation.iloc[0], rows.shade.iloc[0])
        ax.stairs(density, bins, linewidth=1.6, color=color, label=series)
        shares.append((color, spectrum_shares(own, bins)))
        highest = max(highest, density.max())
    shares_box(ax, shares)
    ax.set_ylim(0, HEADROOM * highest or 1)  # room for the shares above the outlines
    draw_spectrum_axis(ax, bins)


def draw_spectrum_axis(ax: Axes, bins: np.ndarray) -> None:
    """The log axis of s over the bins: the band's edges and 1 under two decades, else powers of ten."""
    ax.set_xscale("log")
    ax.set_xlim(bins[0], bins[-1])
    if bins[-1] / bins[0] < 100:  # under two decades: the band's edges and 1, not 3 x 10^-1 on every minor tick
        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if bins[0] <= t <= bins[-1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    else:
        ax.xaxis.set_major_locator(LogLocator(numticks=7))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("singular value s of J at init")
    ax.set_ylabel("share of singular values\nper decade of s")
    small_legend(ax)


def jacobian_curves(df: pd.DataFrame, ax: Axes, name: str) -> None:
    """A whole-network Jacobian metric against training step, one line per series (seed mean and band)."""
    rows = df[df.name == name]
    if rows.empty:
        say_empty(ax, "no Jacobian measured")
        return
    for series, own in by_series(rows):
        draw_series(ax, own, "step", log=False, color=series_color(own.activation.iloc[0], own.shade.iloc[0]),
                    linewidth=1.6, marker="o", markersize=3, label=series)
    if mark_divergence(ax, rows):
        ax.plot([], [], "X", color="crimson", markersize=7, label=DIVERGED_LABEL)
    ax.set_xlabel("training step")


def log_sv_mean_curves(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 11a: the mean of ln s over J's singular values against step; 0 is isometric on average."""
    jacobian_curves(df, ax, "jac_log_sv_mean")
    ax.axhline(0.0, color="0.4", linewidth=0.8, label="ln s = 0: isometric on average")
    ax.set_ylabel("mean ln s over the\nsingular values of J")
    small_legend(ax)


def isometry_curves(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 11b: the share of J's singular values within a factor 2 of 1 against step."""
    jacobian_curves(df, ax, "jac_isometry")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"share of s in {BAND_LABEL.split('band ')[1]}")
    small_legend(ax)
