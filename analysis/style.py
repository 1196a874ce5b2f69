"""Style shared by every figure: one color per activation, one line style per init, seeds as a mean and a band.

Lines within a panel are the swept series (depth, width, ...), drawn from light to dark in the activation's
color. Theory is always a thin black line in the init's style.
"""

import colorsys
from collections.abc import Callable, Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradlab.activations import ACTIVATIONS
from gradlab.inits import INITS

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
# Hues in degrees, far apart: each series' lightness then shows its place in the sweep (see series_color).
ACTIVATION_HUES = {"sigmoid": 210, "tanh": 28, "relu": 130, "leaky_relu": 170, "elu": 275, "selu": 50,
                   "gelu": 350, "softplus": 315, "linear": None}  # None: gray
GOLDEN_ANGLE = 137.5  # hue steps for activations registered later: far from their neighbours
INIT_STYLES = {
    "normal": (0, (1, 1.5)),  # dotted
    "uniform": (0, (6, 2, 1, 2)),  # dash-dot
    "xavier_uniform": "-",
    "xavier_normal": (0, (9, 3)),  # long dashes
    "kaiming_uniform": (0, (3, 1, 1, 1, 1, 1)),  # dash-dot-dot
    "kaiming_normal": (0, (4, 2)),  # dashes
    "lecun_normal": (0, (1, 1, 1, 1, 6, 2)),
    "orthogonal": (0, (12, 2, 2, 2)),
}
THEORY = {"color": "black", "linewidth": 1.1, "alpha": 0.85}
PANEL_SIZE = (3.4, 2.3)  # inches of plotting area per panel
MARGINS = {"left": 1.05, "right": 0.3, "bottom": 0.7, "top": 0.8}  # inches: y labels, x labels, titles


def series_color(activation: str, shade: float) -> tuple[float, float, float]:
    """The activation's hue, lighter for shade near 0 and darker for shade 1."""
    names = list(ACTIVATIONS)
    index = names.index(activation) if activation in names else len(names)
    hue = ACTIVATION_HUES.get(activation, (index * GOLDEN_ANGLE) % 360)
    saturation = 0.0 if hue is None else 0.75
    return colorsys.hls_to_rgb((hue or 0) / 360, 0.74 - 0.5 * shade, saturation)


def init_style(init: str) -> str | tuple:
    return INIT_STYLES.get(init, "-")


def seed_band(df: pd.DataFrame, x: str, log: bool) -> pd.DataFrame:
    """Mean over seeds at each x, with the band min..max; means of log10 values when log (a geometric mean)."""
    values = df.assign(value=np.log10(df.value.where(df.value > 0)) if log else df.value)
    values = values[np.isfinite(values.value)]
    band = values.groupby(x).value.agg(["mean", "min", "max"]).reset_index()
    if log:
        band[["mean", "min", "max"]] = 10 ** band[["mean", "min", "max"]]
    return band


def draw_series(ax: Axes, df: pd.DataFrame, x: str, log: bool, **line: object) -> None:
    """One line through the seed mean of df's values against x, and a band where there is more than one seed."""
    band = seed_band(df, x, log)
    if band.empty:
        return
    if len(band) == 1:
        line = {"marker": "o", **line}  # a single point draws no line
    (drawn,) = ax.plot(band[x], band["mean"], **line)
    if df.run.nunique() > 1:
        ax.fill_between(band[x], band["min"], band["max"], color=drawn.get_color(), alpha=0.2, linewidth=0)


def by_series(df: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    """The series in df, lightest first."""
    for _, rows in sorted(df.groupby("series", sort=False), key=lambda item: item[1].shade.iloc[0]):
        yield rows.series.iloc[0], rows


def say_empty(ax: Axes, message: str = "no finite values recorded") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def small_legend(ax: Axes, **kwargs: object) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", framealpha=0.8, **kwargs)


def ordered(values: pd.Series, registry: Iterable[str]) -> list:
    """The distinct values, registry order first (activations, inits), then sorted."""
    present = list(values.dropna().unique())
    return [v for v in registry if v in present] + sorted(v for v in present if v not in registry)


def panel_grid(nrows: int, ncols: int, gaps: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """nrows x ncols panels with fixed margins and gaps (width, height) in inches.

    Fixed margins, not a layout engine: constrained layout draws every figure twice, a third of the build time.
    """
    width = MARGINS["left"] + MARGINS["right"] + ncols * PANEL_SIZE[0] + (ncols - 1) * gaps[0]
    height = MARGINS["bottom"] + MARGINS["top"] + nrows * PANEL_SIZE[1] + (nrows - 1) * gaps[1]
    fig = plt.figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": MARGINS["left"] / width, "right": 1 - MARGINS["right"] / width,
        "bottom": MARGINS["bottom"] / height, "top": 1 - MARGINS["top"] / height,
        "wspace": gaps[0] / PANEL_SIZE[0], "hspace": gaps[1] / PANEL_SIZE[1]})
    return fig, axes


def no_data(message: str = "no measurements for this figure") -> Figure:
    fig, axes = panel_grid(1, 1, (0, 0))
    say_empty(axes[0, 0], message)
    return fig


def facet_grid(df: pd.DataFrame, draw: Callable[[pd.DataFrame, Axes], None], rows: str = "activation",
               cols: str = "init", title: Callable[[pd.DataFrame], str] | None = None) -> Figure:
    """One panel per (rows, cols) pair present in df, each drawn by draw(subset, ax)."""
    if df.empty:
        return no_data()
    row_values = ordered(df[rows], ACTIVATIONS if rows == "activation" else [])
    col_values = ordered(df[cols], INITS if cols == "init" else [])
    fig, axes = panel_grid(len(row_values), len(col_values), gaps=(0.75, 0.6))
    for ax, (row, col) in zip(axes.flat, [(r, c) for r in row_values for c in col_values], strict=True):
        subset = df[(df[rows] == row) & (df[cols] == col)]
        if subset.empty:
            ax.set_axis_off()
            continue
        draw(subset, ax)
        ax.set_title(title(subset) if title else f"{row} · {col}", fontsize="medium")
    for ax in axes[:, 1:].flat:  # the same quantity in every panel: label it once per row and column
        ax.set_ylabel("")
    for ax in axes[:-1, :].flat:
        ax.set_xlabel("")
    return fig


def facet_wrap(df: pd.DataFrame, draw: Callable[[pd.DataFrame, Axes], None], by: str, ncols: int = 3,
               title: Callable[[pd.DataFrame], str] | None = None) -> Figure:
    """One panel per value of `by`, in df's order, ncols to a row."""
    if df.empty:
        return no_data()
    values = list(df[by].unique())
    ncols = min(ncols, len(values))
    nrows = -(-len(values) // ncols)
    fig, axes = panel_grid(nrows, ncols, gaps=(1.4, 0.9))
    for ax in axes.flat[len(values):]:
        ax.set_axis_off()
    for ax, value in zip(axes.flat, values, strict=False):
        subset = df[df[by] == value]
        draw(subset, ax)
        ax.set_title(title(subset) if title else str(value), fontsize="medium")
    return fig
