"""Figures 10 and 11, the input-output Jacobian J = d h^{depth-1} / d x (dynamical isometry: Saxe et al. 2014,
Pennington et al. 2017): each draws one panel, no I/O.

Figure 10 takes spectra rows (run, singular_value, the run's facets and series labels): every singular value of
every measured example at init. Every panel holds one init, so its histograms are all drawn solid: a dash pattern
would break up the steps. Figure 11 takes metric rows named jac_log_sv_mean and jac_isometry.
"""

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator, NullFormatter

from analysis.style import by_series, draw_series, init_style, mark_divergence, say_empty, series_color, small_legend
from gradlab.jacobian import ISOMETRY_BAND

BINS = 41  # odd: a spike (every s = 1, orthogonal linear) falls in one bin, not on the edge between two
MIN_DECADES = 1.0  # a spectrum narrower than this (orthogonal linear: all 1) is drawn over one decade around it
NO_SPECTRA = ("no Jacobian spectra: jacobian.examples=0, depth 1, or runs recorded before J was measured")
BAND_LABEL = f"isometry band [{ISOMETRY_BAND[0]:g}, {ISOMETRY_BAND[1]:g}]"


def log_bins(values: np.ndarray) -> np.ndarray:
    """BINS edges evenly spaced in log10 over the positive values, at least MIN_DECADES wide."""
    lo, hi = np.log10(values.min()), np.log10(values.max())
    middle, half = (lo + hi) / 2, max(hi - lo, MIN_DECADES) / 2 * 1.02
    return np.logspace(middle - half, middle + half, BINS + 1)


def spectrum_histograms(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 10: the distribution of J's singular values at init, one outline per series (seeds pooled), as a
    share of all singular values per decade; exact zeros (dead ReLU paths) are counted in the legend."""
    values = df.singular_value.to_numpy(float)
    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive):
        say_empty(ax, "no nonzero singular values")
        return
    bins = log_bins(positive)
    ax.axvspan(*ISOMETRY_BAND, color="0.85", zorder=0)
    ax.axvline(1.0, color="0.4", linewidth=0.8)
    highest = 0.0
    for series, rows in by_series(df):
        own = rows.singular_value.to_numpy(float)
        counts, _ = np.histogram(own[np.isfinite(own) & (own > 0)], bins)
        density = counts / len(own) / np.diff(np.log10(bins))
        zeros = np.mean(own == 0)
        ax.stairs(density, bins, linewidth=1.6, color=series_color(rows.activation.iloc[0], rows.shade.iloc[0]),
                  label=series + (f" ({zeros:.0%} exactly 0)" if zeros else ""))
        highest = max(highest, density.max())
    ax.set_ylim(0, 1.45 * highest)  # headroom: the legend sits above the histograms, not on them
    ax.set_xscale("log")
    if bins[-1] / bins[0] < 100:  # under two decades: the band's edges and 1, not 3 x 10^-1 on every minor tick
        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if bins[0] <= t <= bins[-1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    else:
        ax.xaxis.set_major_locator(LogLocator(numticks=6))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("singular value s of J at init (gray: [0.5, 2])")
    ax.set_ylabel("share of singular values\nper decade of s")
    if ax.get_legend_handles_labels()[0]:
        handles = len(ax.get_legend_handles_labels()[0])
        ax.legend(fontsize="x-small", framealpha=0.8, loc="upper center", ncol=2 if handles > 3 else 1)


def jacobian_curves(df: pd.DataFrame, ax: Axes, name: str) -> None:
    """A whole-network Jacobian metric against training step, one line per series (seed mean and band)."""
    rows = df[df.name == name]
    if rows.empty:
        say_empty(ax, "no Jacobian measured")
        return
    for series, own in by_series(rows):
        draw_series(ax, own, "step", log=False, color=series_color(own.activation.iloc[0], own.shade.iloc[0]),
                    linestyle=init_style(own.init.iloc[0]), linewidth=1.6, marker="o", markersize=3, label=series)
    if mark_divergence(ax, rows):
        ax.plot([], [], "X", color="crimson", markersize=7, label="diverged here")
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
