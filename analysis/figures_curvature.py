"""Figure 17: the sharpness, the loss Hessian's top eigenvalue (gradlab.curvature), against training step, with
each run's edge of stability dashed in its color: 2 / lr for gradient descent, (2 + 2 momentum) / lr with heavy-ball
momentum (Cohen et al. 2021); none for Adam, whose steps are preconditioned. Rows only, no I/O."""

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from analysis.needs import SHARPNESS
from analysis.style import THEORY_DASHES, by_series, draw_series, series_color


def edge_of_stability(optimizer: str, lr: float, momentum: float) -> float | None:
    """Where gradient descent on a quadratic of this curvature stops converging: (2 + 2 momentum) / lr for SGD with
    heavy-ball momentum (2 / lr without), None for an adaptive optimizer."""
    return (2 + 2 * momentum) / lr if optimizer == "sgd" else None


def sharpness_curves(df: pd.DataFrame, ax: Axes) -> None:
    """One line per series (seed mean and band) of the sharpness against step; its `edge` column dashed."""
    rows = df[df.name == SHARPNESS]
    for series, own in by_series(rows):
        color = series_color(own.activation.iloc[0], own.shade.iloc[0])
        draw_series(ax, own, "step", log=True, color=color, linewidth=1.8, label=series)
        edge = own.edge.dropna()
        if len(edge):
            ax.axhline(float(edge.iloc[0]), color=color, linestyle=THEORY_DASHES, linewidth=1.1)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("sharpness: top eigenvalue\nof the loss Hessian")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="gray", linestyle=THEORY_DASHES, linewidth=1.1))
    ax.legend(handles, [*labels, "edge of stability: (2 + 2 momentum) / lr"], fontsize="x-small", framealpha=0.8)
