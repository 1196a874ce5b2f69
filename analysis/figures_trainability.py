"""Figure 12, the trainability map (Schoenholz et al. 2017, figure 5): one panel from trainability rows, no I/O.

Rows come from analysis.trainability.trainability_rows, one panel's worth: source "cell" (sigma_w2, depth,
accuracy, diverged, runs, steps, trainable, predicted), "theory" (sigma_w2, depth = 6 xi_c) and "critical" (the edge
of chaos's sigma_w2, NaN where there is none).
"""

import matplotlib.patheffects as patheffects
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from analysis.style import say_empty

MAX_LABELLED_CELLS = 60  # beyond this, the accuracies written in the cells crowd each other
CURVE = {"color": "white", "linewidth": 2.2, "path_effects": [patheffects.withStroke(linewidth=4, foreground="black")]}
EDGE = {"color": "black", "linestyle": (0, (5, 3)), "linewidth": 1.4,
        "path_effects": [patheffects.withStroke(linewidth=3, foreground="white")]}
MISS = {"fill": False, "edgecolor": "crimson", "linewidth": 1.4}
HALO = [patheffects.withStroke(linewidth=2.5, foreground="white")]


def edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: midway between neighbours (geometrically if log), half a gap outside."""
    centres = np.log(values) if log else values
    inner = (centres[1:] + centres[:-1]) / 2
    outer = np.concatenate([[2 * centres[0] - inner[0]], inner, [2 * centres[-1] - inner[-1]]])
    return np.exp(outer) if log else outer


def evener_on_log(values: np.ndarray) -> bool:
    """Whether sorted positive values are more evenly spaced on a log axis than on a linear one (2, 4, 12: yes)."""
    def unevenness(points: np.ndarray) -> float:
        gaps = np.diff(points)
        return float(np.std(gaps) / np.mean(gaps))

    return len(values) > 2 and unevenness(np.log(values)) < unevenness(values)


def cell_grid(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The sigma_w^2 and depth centres, and cells pivoted to depth x sigma_w^2 (NaN where no run was)."""
    grid = cells.pivot_table(index="depth", columns="sigma_w2", values="accuracy", dropna=False)
    return grid.columns.to_numpy(float), grid.index.to_numpy(float), grid


def label_cells(ax: Axes, cells: pd.DataFrame) -> None:
    """Each cell's accuracy, or 'diverged'; light text on dark cells."""
    for cell in cells.itertuples(index=False):
        text = "diverged" if np.isnan(cell.accuracy) else f"{cell.accuracy:.2f}"
        dark = not np.isnan(cell.accuracy) and cell.accuracy < 0.6
        ax.text(cell.sigma_w2, cell.depth, text, ha="center", va="center", fontsize="xx-small",
                color="white" if dark else "black")


def label_curve(ax: Axes, curve: pd.DataFrame) -> None:
    """'6 xi_c' beside the curve where it is nearest the middle height of the panel, clear of the title and edges
    (a legend would cover cells). Call once the axes' limits and scales are set."""
    points = curve[np.isfinite(curve.depth)][["sigma_w2", "depth"]].to_numpy(float)
    at = ax.transAxes.inverted().transform(ax.transData.transform(points)) if len(points) else points
    inside = (at[:, 0] > 0.05) & (at[:, 0] < 0.8) & (at[:, 1] > 0.1) & (at[:, 1] < 0.9) if len(at) else []
    if not np.any(inside):
        return
    best = np.flatnonzero(inside)[np.argmin(np.abs(at[inside, 1] - 0.5))]
    ax.annotate(r"6 $\xi_c$", points[best], xytext=(6, 0), textcoords="offset points", ha="left", va="center",
                fontsize="small", color="white", path_effects=[patheffects.withStroke(linewidth=2.5,
                                                                                     foreground="black")])


def trainability_map(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 12: test accuracy over sigma_w^2 x depth, 6 xi_c over it, the edge of chaos as a vertical line, and
    the cells on the wrong side of the theory outlined."""
    cells, curve = df[df.source == "cell"], df[df.source == "theory"]
    if cells.empty:
        say_empty(ax, "no (sigma_w^2, depth) grid")
        return
    xs, ys, grid = cell_grid(cells)
    log_x, log_y = evener_on_log(xs), evener_on_log(ys)  # cells of even size, whatever the sweep's spacing
    x_edges, y_edges = edges(xs, log_x), edges(ys, log_y)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid.to_numpy(float)), cmap="viridis", vmin=0, vmax=1)
    steps = cells.steps.dropna()
    after = f" after {int(steps.max())} steps" if len(steps) and steps.nunique() == 1 else ""
    ax.figure.colorbar(mesh, ax=ax, label=f"test accuracy{after}")
    if len(cells) <= MAX_LABELLED_CELLS:
        label_cells(ax, cells)
    for cell in cells[cells.predicted.notna() & (cells.trainable.astype(bool) != cells.predicted.astype(bool))
                      ].itertuples(index=False):
        i, j = list(xs).index(cell.sigma_w2), list(ys).index(cell.depth)
        ax.add_patch(Rectangle((x_edges[i], y_edges[j]), x_edges[i + 1] - x_edges[i], y_edges[j + 1] - y_edges[j],
                               **MISS))
    ax.plot(curve.sigma_w2, curve.depth.clip(upper=10 * y_edges[-1]), **CURVE)  # infinite at the edge: off the top
    edge = df[df.source == "critical"].sigma_w2.dropna()
    for x in edge:
        ax.axvline(x, **EDGE)
        ax.text(x, 0.02, f"edge of chaos {x:.3g}", transform=ax.get_xaxis_transform(), rotation=90, ha="right",
                va="bottom", fontsize="x-small", color="black", path_effects=HALO)
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xscale("log" if log_x else "linear")
    ax.set_yscale("log" if log_y else "linear")
    label_curve(ax, curve)
    ax.set_xticks(xs, [f"{x:.3g}" for x in xs])
    ax.set_yticks(ys, [f"{y:g}" for y in ys])
    ax.minorticks_off()
    ax.set_xlabel(r"$\sigma_w^2$ of the hidden layers")
    ax.set_ylabel("depth")
    ax.grid(False)
    ax.set_facecolor("0.85")  # cells no run filled
