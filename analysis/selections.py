"""Which rows a figure gets: the selections that several figures share."""

import pandas as pd

from analysis.families import layer_rows, on_layer_axis

MAX_HEATMAP_PANELS = 12


def deepest_configs(metrics: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per-layer rows (families.layer_rows) of the deepest runs, one panel (seeds averaged) per configuration, at most
    MAX_HEATMAP_PANELS."""
    by_layer = on_layer_axis(metrics)
    deepest = metrics[by_layer & (metrics.depth == metrics.depth[by_layer].max()) & metrics.name.isin(names)]
    return deepest[deepest.panel.isin(list(deepest.panel.unique())[:MAX_HEATMAP_PANELS])]


def deepest_title(rows: pd.DataFrame) -> str:
    return f"{rows.panel.iloc[0]} · depth {int(rows.depth.iloc[0])}"


def at_init(metrics: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The per-layer rows of the names at step 0."""
    rows = layer_rows(metrics, names)
    return rows[rows.step == 0]
