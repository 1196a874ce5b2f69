"""The instruments' figures (gradlab.per_example's noise rows and gradlab.curvature's sharpness): which rows each one
gets and how its panels are laid out. The catalog lists them among the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import figures_batch, figures_curvature, figures_noise, figures_training, needs
from analysis.families import layer_rows, whole_network_rows
from analysis.layout import facet_grid, facet_wrap, no_data, panel_grid
from analysis.selections import at_init, deepest_configs, deepest_title

if TYPE_CHECKING:  # the catalog makes the inputs; these builders only read them
    from analysis.catalog import Inputs


def figure_7c(inputs: Inputs) -> Figure:
    rows = layer_rows(inputs.metrics, [needs.GSNR])
    rows = figures_noise.complete_profiles(rows[rows.layer.notna()])  # the whole network's: a row of its own
    return facet_grid(rows, figures_training.gsnr_profile) if not rows.empty else no_data(figures_noise.NO_NOISE)


def figure_7d(inputs: Inputs) -> Figure:
    rows = at_init(inputs.metrics, [needs.GSNR, needs.GRAD_NOISE_TRACE])
    rows = rows[rows.layer.notna()].assign(batch_in_force=rows.run.map(batch_in_force(inputs)))
    rows = rows[rows.batch_in_force.notna()]  # records from before it was recorded
    if rows.empty or rows.name.nunique() < 2:
        return no_data(figures_noise.NO_NOISE)
    return facet_grid(figures_noise.signal_and_noise(rows), figures_noise.noise_at_init)


def figure_18(inputs: Inputs, draw: Callable[[pd.DataFrame, Axes], None]) -> Figure:
    """Figure 18a or 18b: the noise rows of the deepest runs' drawn layers, and the whole network's."""
    rows = deepest_configs(inputs.metrics, [needs.GSNR])
    rows = figures_noise.over_training(rows.assign(batch_in_force=rows.run.map(batch_in_force(inputs))))
    if rows.empty:
        return no_data(figures_noise.NO_NOISE)
    return facet_wrap(rows, draw, by="panel", title=deepest_title)


def batch_in_force(inputs: Inputs) -> pd.Series:
    """Each run's examples per step (a fact of its record; NaN for older records), by run."""
    runs = inputs.runs.set_index("run")
    return runs.batch_in_force.astype(float) if "batch_in_force" in runs else pd.Series(float("nan"), runs.index)


def figure_19(inputs: Inputs) -> Figure:
    """Per group of runs that differ in batch size and learning rate: steps to the target, and B_simple over steps."""
    fits = figures_batch.group_scalings(inputs.runs, inputs.metrics, inputs.config_keys)
    whole = inputs.metrics[inputs.metrics.layer.isna() & inputs.metrics.name.isin(needs.NOISE_ROWS)]
    fig, axes = panel_grid(max(1, len(fits)), 2, (1.4, 1.0))
    for row, (name, fit) in enumerate(fits or [("", None)]):
        figures_batch.steps_against_batch(fit, axes[row, 0])
        figures_batch.noise_scale_over_training(fit, whole, axes[row, 1])
        axes[row, 0].set_title(name, fontsize="medium")
    return fig


def has_sharpness(inputs: Inputs) -> bool:
    """Whether some run measured the sharpness (curvature.every)."""
    return bool((inputs.metrics.name == needs.SHARPNESS).any())


def figure_17(inputs: Inputs) -> Figure:
    """The sharpness of every run that measured it, each with its edge of stability (from its config)."""
    rows = whole_network_rows(inputs.metrics, [needs.SHARPNESS])
    runs = inputs.runs.set_index("run").loc[rows.run.unique()]
    edges = {run: figures_curvature.edge_of_stability(str(own.get("optimizer.name", "sgd")), float(own.lr),
                                                      float(own.get("momentum", 0.0))) for run, own in runs.iterrows()}
    return facet_grid(rows.assign(edge=rows.run.map(edges).astype(float)), figures_curvature.sharpness_curves)
