"""Style shared by every figure: one color per activation, one line style per init, seeds as a mean and a band.

Lines within a panel are the swept series (depth, width, ...), drawn from light to dark in the activation's
color. Theory is always a thin black line in the init's style.
"""

import colorsys
import textwrap
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
TITLE_WIDTH = 44  # characters that fit over a panel
MAX_COLUMNS = 5  # a facet grid with more columns wraps its panels into rows of 3
MARGINS = {"left": 1.05, "right": 0.3, "bottom": 0.7, "top": 0.95}  # inches: y labels, x labels, titles


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
    """The series in df, lightest first, each with its legend label (its `line` where df has one)."""
    for _, rows in sorted(df.groupby("series", sort=False), key=lambda item: item[1].shade.iloc[0]):
        yield (rows.line if "line" in rows else rows.series).iloc[0], rows


def say_empty(ax: Axes, message: str = "no finite values recorded") -> None:
    """The message in the middle of the panel, broken into lines that fit it."""
    ax.text(0.5, 0.5, textwrap.fill(message, TITLE_WIDTH), ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def mark_divergence(ax: Axes, df: pd.DataFrame) -> bool:
    """A red cross at the last finite value of each diverged run in df (rows of one metric); whether any was drawn."""
    diverged = df[(df.status == "diverged") & np.isfinite(df.value)]
    ends = diverged.sort_values("step").groupby("run").tail(1)
    ax.scatter(ends.step, ends.value, marker="X", s=60, color="crimson", zorder=5)
    return len(ends) > 0


def small_legend(ax: Axes, **kwargs: object) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", framealpha=0.8, **kwargs)


def ordered(values: pd.Series, registry: Iterable[str]) -> list:
    """The distinct values, registry order first (activations, inits), then sorted."""
    present = list(values.dropna().unique())
    return [v for v in registry if v in present] + sorted(v for v in present if v not in registry)


def facet_values(df: pd.DataFrame, key: str) -> list:
    """The distinct values of a facet key: by its <key>_order column if there is one, else by registry."""
    if f"{key}_order" in df:  # the distinct pairs, not every row, are sorted: figure 10 has 10^7 rows
        pairs = df[[key, f"{key}_order"]].drop_duplicates()
        return list(pairs.sort_values(f"{key}_order", kind="stable")[key].unique())
    return ordered(df[key], ACTIVATIONS if key == "activation" else INITS if key == "init" else [])


def panel_grid(nrows: int, ncols: int, gaps: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """nrows x ncols panels with fixed margins and gaps (width, height) in inches.

    Fixed margins, not a layout engine: constrained layout draws every figure twice, a third of the build time.
    """
    scale = 1.4 if nrows * ncols <= 2 else 1.0  # a lone panel would be small beside its legend
    panel = (PANEL_SIZE[0] * scale, PANEL_SIZE[1] * scale)
    width = MARGINS["left"] + MARGINS["right"] + ncols * panel[0] + (ncols - 1) * gaps[0]
    height = MARGINS["bottom"] + MARGINS["top"] + nrows * panel[1] + (nrows - 1) * gaps[1]
    fig = plt.figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": MARGINS["left"] / width, "right": 1 - MARGINS["right"] / width,
        "bottom": MARGINS["bottom"] / height, "top": 1 - MARGINS["top"] / height,
        "wspace": gaps[0] / panel[0], "hspace": gaps[1] / panel[1]})
    return fig, axes


def no_data(message: str = "no measurements for this figure") -> Figure:
    fig, axes = panel_grid(1, 1, (0, 0))
    say_empty(axes[0, 0], message)
    return fig


def facet_grid(df: pd.DataFrame, draw: Callable[[pd.DataFrame, Axes], None], rows: str = "activation",
               cols: str = "column", title: Callable[[pd.DataFrame], str] | None = None) -> Figure:
    """One panel per (rows, cols) pair present in df, each drawn by draw(subset, ax).

    The default columns are the inits, split further by any swept key other than depth (width, lr, ...).
    """
    if df.empty:
        return no_data()
    row_values, col_values = facet_values(df, rows), facet_values(df, cols)
    if len(col_values) > MAX_COLUMNS:  # too wide, and sparse when sweeps differ: wrap the panels present instead
        order = df[rows].map(row_values.index).to_numpy() * len(col_values) + df[cols].map(col_values.index).to_numpy()
        in_order = df.iloc[np.argsort(order, kind="stable")]
        panels = in_order.assign(facet=in_order[rows].astype(str) + " · " + in_order[cols].astype(str))
        return facet_wrap(panels, draw, by="facet", ncols=3, gaps=(0.75, 1.0), inner_labels=False, title=title)
    fig, axes = panel_grid(len(row_values), len(col_values), gaps=(0.75, 0.6))
    for ax, (row, col) in zip(axes.flat, [(r, c) for r in row_values for c in col_values], strict=True):
        subset = df[(df[rows] == row) & (df[cols] == col)]
        if subset.empty:
            ax.set_axis_off()
            continue
        draw(subset, ax)
        set_title(ax, title(subset) if title else f"{row} · {col}")
    outer_labels_only(axes)
    return fig


def outer_labels_only(axes: np.ndarray) -> None:
    """The same quantity in every panel: label the y axis in the first column, the x axis in the last row."""
    for ax in axes[:, 1:].flat:
        ax.set_ylabel("")
    for ax, below in zip(axes[:-1, :].flat, axes[1:, :].flat, strict=True):
        if below.axison:  # a panel with none below it keeps its x label
            ax.set_xlabel("")


def facet_wrap(df: pd.DataFrame, draw: Callable[[pd.DataFrame, Axes], None], by: str, ncols: int = 3,
               title: Callable[[pd.DataFrame], str] | None = None, gaps: tuple[float, float] = (1.4, 0.9),
               inner_labels: bool = True) -> Figure:
    """One panel per value of `by`, in df's order, ncols to a row; inner_labels=False labels outer axes only."""
    if df.empty:
        return no_data()
    values = list(df[by].unique())
    ncols = min(ncols, len(values))
    nrows = -(-len(values) // ncols)
    fig, axes = panel_grid(nrows, ncols, gaps)
    for ax in axes.flat[len(values):]:
        ax.set_axis_off()
    for ax, value in zip(axes.flat, values, strict=False):
        subset = df[df[by] == value]
        draw(subset, ax)
        set_title(ax, title(subset) if title else str(value))
    if not inner_labels:
        outer_labels_only(axes)
    return fig


def set_title(ax: Axes, text: str) -> None:
    """A panel title; a long one breaks after the activation, or after the init where that takes fewer lines
    (several swept keys: arch, norm, optimizer.name, ...), then wherever it is wider than the panel."""
    if len(text) > TITLE_WIDTH:
        parts = text.split(" · ")
        broken = [" · ".join(parts[:n]) + "\n" + textwrap.fill(" · ".join(parts[n:]), TITLE_WIDTH)
                  for n in range(1, min(len(parts), 3)) if len(" · ".join(parts[:n])) <= TITLE_WIDTH]
        text = min(broken, key=lambda title: title.count("\n")) if broken else textwrap.fill(text, TITLE_WIDTH)
    ax.set_title(text, fontsize="medium")
