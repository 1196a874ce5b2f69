"""Figures of a recurrent network through time (14, 15): each draws one panel from a tidy DataFrame, no I/O.

Rows lie on the time axis (analysis.families): time step t = 1..T, the readout at T. Figure 14 draws state_grad_rms
at init against t, one line per series, with gradlab.theory_rnn's profile dashed over it (none for an LSTM, and the
panel says so); figure 15 is figure 3's heat map with time steps for layers.
"""

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.figures_training import grad_norm_heatmap
from analysis.needs import STATE_GRAD_RMS
from analysis.predict_time import NO_THEORY_FOR_LSTM, PREDICTED
from analysis.style import THEORY, THEORY_DASHES, by_series, draw_series, series_color

THEORY_LABEL = "mean-field theory"


def state_grad_rms_at_init(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 14: state_grad_rms = sqrt(mean_b ||dL/dh_t||^2) at step 0 against time step, one line per series (seed
    mean and band), the theory's profile dashed and black where it predicts."""
    at_init = df[df.step == 0].astype({"time": float})
    for series, rows in by_series(at_init[at_init.name == STATE_GRAD_RMS]):
        color = series_color(rows.activation.iloc[0], rows.shade.iloc[0])
        draw_series(ax, rows, "time", log=True, color=color, linewidth=2, label=series)
    for index, (_, rows) in enumerate(by_series(at_init[at_init.name == PREDICTED])):
        draw_series(ax, rows.assign(run=0), "time", log=True, linestyle=THEORY_DASHES,
                    label=THEORY_LABEL if index == 0 else None, **THEORY)
    handles, labels = ax.get_legend_handles_labels()
    if "cell" in at_init and (at_init.cell == "lstm").any():  # in the legend, off the lines
        handles, labels = [*handles, Line2D([], [], linestyle="none")], [*labels, NO_THEORY_FOR_LSTM]
    if handles:
        ax.legend(handles, labels, fontsize="x-small", framealpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("time step t (readout at T)")
    ax.set_ylabel("state_grad_rms at init\n(per-example ||dL/dh_t||)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def grad_norm_over_time(df: pd.DataFrame, ax: Axes) -> None:
    """Figure 15: log10 grad_norm = ||h_{t-1}^T delta_t||, step t's share of dL/dW, over time step x training step."""
    grad_norm_heatmap(df, ax, along="time")
