"""Layout of a figure's panels: facet grids without empty cells, shared axes, and legends beside the panels.

The panels of a figure show one quantity, so by default they share their x and y limits: a flat line in one panel
and a steep one in the next look flat and steep, without reading tick labels. Only the outer panels then carry tick
and axis labels. A grid is full (every row has every column), or the panels present are wrapped into rows with as
few empty cells as can be. Each row's panel legends are gathered into one legend beside the row, off the data.

Fixed margins, not a layout engine: constrained layout draws every figure twice, a third of the build time.
"""

import textwrap
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.legends import legends_beside_rows, plain_log_labels
from analysis.style import TITLE_WIDTH, ordered, pin_off_scale, say_empty
from gradlab.activations import ACTIVATIONS
from gradlab.inits import INITS

PANEL_SIZE = (3.4, 2.3)  # inches of plotting area per panel
MAX_COLUMNS = 5  # more panels than this wrap into rows of 3 to 5
MARGINS = {"left": 1.05, "right": 0.3, "bottom": 0.7, "top": 0.95}  # inches: y labels, x labels, titles
SHARED_GAPS = (0.25, 0.45)  # inches between panels sharing their axes: room for a title's line, no tick labels
OWN_GAPS = (1.4, 0.9)  # inches between panels with axes of their own: their tick and axis labels
TITLE_LINE = 0.22  # inches per further line of a panel's title


def panel_grid(nrows: int, ncols: int, gaps: tuple[float, float], panel: tuple[float, float] | None = None,
               margins: dict[str, float] | None = None) -> tuple[Figure, np.ndarray]:
    """nrows x ncols panels of `panel` inches with fixed margins and gaps (width, height) in inches."""
    scale = 1.4 if nrows * ncols <= 2 else 1.0  # a lone panel would be small beside its legend
    panel = panel or (PANEL_SIZE[0] * scale, PANEL_SIZE[1] * scale)
    margins = {**MARGINS, **(margins or {})}
    width = margins["left"] + margins["right"] + ncols * panel[0] + (ncols - 1) * gaps[0]
    height = margins["bottom"] + margins["top"] + nrows * panel[1] + (nrows - 1) * gaps[1]
    fig = plt.figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": margins["left"] / width, "right": 1 - margins["right"] / width,
        "bottom": margins["bottom"] / height, "top": 1 - margins["top"] / height,
        "wspace": gaps[0] / panel[0], "hspace": gaps[1] / panel[1]})
    return fig, axes


def no_data(message: str = "no measurements for this figure") -> Figure:
    """A figure of one panel that says why it has nothing to draw, without ticks."""
    fig, axes = panel_grid(1, 1, (0, 0))
    say_empty(axes[0, 0], message)
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    return fig


def facet_values(df: pd.DataFrame, key: str) -> list:
    """The distinct values of a facet key: by its <key>_order column if there is one, else by registry."""
    if f"{key}_order" in df:  # the distinct pairs, not every row, are sorted: figure 10 has 10^7 rows
        pairs = df[[key, f"{key}_order"]].drop_duplicates()
        return list(pairs.sort_values(f"{key}_order", kind="stable")[key].unique())
    return ordered(df[key], ACTIVATIONS if key == "activation" else INITS if key == "init" else [])


def wrap_columns(count: int) -> int:
    """Panels per row: all in one row up to MAX_COLUMNS, else the 3 to MAX_COLUMNS that leave fewest empty cells."""
    if count <= MAX_COLUMNS:
        return max(count, 1)
    return min(range(3, MAX_COLUMNS + 1), key=lambda ncols: (-count % ncols, ncols))


def facet_grid(df: pd.DataFrame, draw: Callable[[pd.DataFrame, Axes], None], rows: str = "activation",
               cols: str = "column", title: Callable[[pd.DataFrame], str] | None = None) -> Figure:
    """One panel per (rows, cols) pair present in df, each drawn by draw(subset, ax), all on shared axes.

    The default columns are the inits, split further by any swept key other than depth (width, lr, ...). Where a
    pair is missing or there are more than MAX_COLUMNS columns, the panels present are wrapped instead.
    """
    if df.empty:
        return no_data()
    row_values, col_values = facet_values(df, rows), facet_values(df, cols)
    present = set(df[[rows, cols]].drop_duplicates().itertuples(index=False, name=None))
    if len(col_values) > MAX_COLUMNS or len(present) < len(row_values) * len(col_values):
        order = df[rows].map(row_values.index).to_numpy() * len(col_values) + df[cols].map(col_values.index).to_numpy()
        in_order = df.iloc[np.argsort(order, kind="stable")]
        panels = in_order.assign(facet=in_order[rows].astype(str) + " · " + in_order[cols].astype(str))
        return facet_wrap(panels, draw, by="facet", title=title)
    cells = [(r, c) for r in row_values for c in col_values]

    def subset(cell: tuple) -> pd.DataFrame:  # one at a time: figure 10's rows are many
        return df[(df[rows] == cell[0]) & (df[cols] == cell[1])]

    titles = [title(subset(cell)) if title else f"{cell[0]} · {cell[1]}" for cell in cells]
    fig, axes = panel_grid(len(row_values), len(col_values), gaps(titles, share=True))
    for ax, cell, text in zip(axes.flat, cells, titles, strict=True):
        draw(subset(cell), ax)
        set_title(ax, text)
    finish(fig, axes, share=True, series=series_labels(df))
    return fig


def facet_wrap(df: pd.DataFrame, draw: Callable[[pd.DataFrame, Axes], None], by: str,
               title: Callable[[pd.DataFrame], str] | None = None, share: bool = True) -> Figure:
    """One panel per value of `by`, in df's order, in rows of wrap_columns; share=False gives each panel its own
    axes and labels (heat maps of different grids)."""
    if df.empty:
        return no_data()
    values = list(df[by].unique())
    ncols = wrap_columns(len(values))
    titles = [title(df[df[by] == value]) if title else str(value) for value in values]
    fig, axes = panel_grid(-(-len(values) // ncols), ncols, gaps(titles, share))
    for ax in axes.flat[len(values):]:
        ax.set_axis_off()
    for ax, value, text in zip(axes.flat, values, titles, strict=False):
        draw(df[df[by] == value], ax)  # one subset at a time: figure 10's rows are many
        set_title(ax, text)
    finish(fig, axes, share, series=series_labels(df))
    return fig


def gaps(titles: list[str], share: bool) -> tuple[float, float]:
    """Gaps between panels, in inches: room for the longest title's lines, and for tick labels where not shared."""
    width, height = SHARED_GAPS if share else OWN_GAPS
    return width, height + TITLE_LINE * max(title_text(text).count("\n") for text in titles)


def drawn(axes: np.ndarray) -> list[Axes]:
    """The panels with something drawn: not switched off, not saying why they are empty."""
    return [ax for ax in axes.flat if ax.axison and ax.get_gid() != "empty"]


def series_labels(df: pd.DataFrame) -> set[str]:
    """The labels a figure gives its series (style.by_series): first in the legends."""
    column = "line" if "line" in df else "series" if "series" in df else None
    return {str(label) for label in df[column].unique()} if column else set()  # not astype(str) of every row


def finish(fig: Figure, axes: np.ndarray, share: bool, series: set[str]) -> None:
    """Shared limits and outer labels where share, divergence crosses pinned inside, legends beside the rows."""
    if share:
        share_limits(drawn(axes), [ax for ax in axes.flat if ax.axison])
        outer_labels_only(axes)
    else:  # a panel with axes of its own that says why it is empty needs none
        for ax in [ax for ax in axes.flat if ax.get_gid() == "empty"]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in drawn(axes):
        pin_off_scale(ax)
        plain_log_labels(ax)
    legends_beside_rows(fig, axes, series)


def share_limits(drawn: list[Axes], panels: list[Axes]) -> None:
    """Every panel gets the scales of the first drawn one and the union of the drawn panels' x limits and of their y
    limits (each as it autoscaled): a panel that says why it is empty takes them too."""
    if not drawn:
        return
    with_data = [ax for ax in drawn if not ax.ignore_existing_data_limits] or drawn  # not only runs that blew up
    for axis in ("x", "y"):
        limits = np.array([getattr(ax, f"get_{axis}lim")() for ax in with_data])
        inverted = limits[0, 0] > limits[0, 1]
        low, high = limits.min(), limits.max()
        scale = getattr(drawn[0], f"get_{axis}scale")()
        for ax in panels:
            if getattr(ax, f"get_{axis}scale")() != scale:  # setting a scale resets the axis' ticks
                getattr(ax, f"set_{axis}scale")(scale)
            getattr(ax, f"set_{axis}lim")((high, low) if inverted else (low, high))


def outer_labels_only(axes: np.ndarray) -> None:
    """Shared axes: y labels and tick labels in the first column, x labels and tick labels under the last panel of
    each column; a panel that says why it is empty gets the labels of its row or column."""
    labelled = next((ax for ax in axes.flat if ax.axison and ax.get_xlabel()), None)
    xlabel, ylabel = (labelled.get_xlabel(), labelled.get_ylabel()) if labelled else ("", "")
    for ax in axes[:, :1].flat:
        if ax.axison:
            ax.set_ylabel(ax.get_ylabel() or ylabel)
    for ax in axes[:, 1:].flat:
        ax.set_ylabel("")
        ax.tick_params(which="both", labelleft=False)
    for ax, below in zip(axes[:-1, :].flat, axes[1:, :].flat, strict=True):
        if below.axison:  # a panel with none below it keeps its x labels
            ax.set_xlabel("")
            ax.tick_params(which="both", labelbottom=False)
    for ax in axes[-1, :].flat:
        if ax.axison:
            ax.set_xlabel(ax.get_xlabel() or xlabel)


def title_text(text: str) -> str:
    """A panel title broken into lines: after the activation, or after the init where that takes fewer lines
    (several swept keys: arch, norm, optimizer.name, ...), then wherever it is wider than the panel."""
    if len(text) <= TITLE_WIDTH:
        return text
    parts = text.split(" · ")
    broken = [" · ".join(parts[:n]) + "\n" + textwrap_fill(" · ".join(parts[n:]))
              for n in range(1, min(len(parts), 3)) if len(" · ".join(parts[:n])) <= TITLE_WIDTH]
    return min(broken, key=lambda title: title.count("\n")) if broken else textwrap_fill(text)


def textwrap_fill(text: str) -> str:
    return textwrap.fill(text, TITLE_WIDTH)


def set_title(ax: Axes, text: str) -> None:
    ax.set_title(title_text(text), fontsize="medium")
