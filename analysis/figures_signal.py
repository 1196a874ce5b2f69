"""Figure 9, signal propagation plots (Brock et al. 2021, NFNets): per hidden layer, each draws one panel, no I/O.

Rows are tidy metrics (run, step, layer, name, value, the run's facets and series labels) named avg_sq_mean (the
squared batch mean of h^l, averaged over units), avg_var (its batch variance, averaged over units) and, for a
residual network, branch_avg_var (the same of the branch alpha z^l). h^l is a hidden layer's output: phi(...) in a
plain network, the stream in a residual one. Every panel holds one init, so the line style tells the profile at
init (thin, dashed, light) from the one at the end (thick, solid), as in figure 7; a residual branch's lines carry
open circles.
"""

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.figures_training import last_step_rows
from analysis.style import AT_END, AT_INIT, by_series, draw_series, say_empty, series_color

NO_SIGNAL = "no signal-propagation measurements"
STREAM_MARKS: dict[str, object] = {}
# the residual branch alpha z: open circles, about one per 6% of the panel's diagonal whatever the depth
BRANCH_MARKS = {"marker": "o", "markersize": 3.5, "markerfacecolor": "white", "markevery": 0.06}
INIT_WIDTH, END_WIDTH = AT_INIT["linewidth"], AT_END["linewidth"]


def init_and_end(ax: Axes, rows: pd.DataFrame, marks: dict, labelled: bool) -> None:
    """Each series' profile at step 0 (thin, dashed) and at its last measured step (thick, solid), on a log scale."""
    for series, own in by_series(rows):
        color = series_color(own.activation.iloc[0], own.shade.iloc[0])
        draw_series(ax, own[own.step == 0], "layer", log=True, color=color, **AT_INIT, **marks)
        draw_series(ax, last_step_rows(own), "layer", log=True, color=color, label=series if labelled else None,
                    **AT_END, **marks)


def signal_profile(df: pd.DataFrame, ax: Axes, name: str, ylabel: str) -> None:
    """A signal metric against hidden layer at init and at the end; residual branches (branch_avg_var) dashed
    beside avg_var."""
    stream = df[df.name == name]
    branch = df[df.name == "branch_avg_var"] if name == "avg_var" else df.iloc[:0]
    if stream.empty and branch.empty:
        say_empty(ax, NO_SIGNAL)
        return
    init_and_end(ax, stream, STREAM_MARKS, labelled=True)
    init_and_end(ax, branch, BRANCH_MARKS, labelled=stream.empty)  # one legend entry per series
    ax.set_yscale("log")
    ax.set_xlabel("hidden layer (1 = input side)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", **AT_INIT), Line2D([], [], color="gray", **AT_END)]
    labels += ["at init (step 0)", "at the end"]
    if not branch.empty:
        handles.append(Line2D([], [], color="gray", **AT_END, **BRANCH_MARKS))
        labels.append("residual branch alpha z")
    ax.legend(handles, labels, fontsize="x-small", framealpha=0.8)


def sq_mean_profile(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 9a: avg_sq_mean, mean over units of the squared batch mean of h^l, at init and at the end."""
    signal_profile(df, ax, "avg_sq_mean", "avg_sq_mean\n(mean over units of batch mean(h)^2)")


def var_profile(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 9b: avg_var, mean over units of the batch variance of h^l (residual branches dashed)."""
    signal_profile(df, ax, "avg_var", "avg_var\n(mean over units of batch var(h))")
