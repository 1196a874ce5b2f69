"""The trainability map (Schoenholz et al. 2017): test accuracy over a grid of sigma_w^2 and depth, beside the
theory's depth scale 6 xi_c(sigma_w^2) and the edge of chaos (gradlab.theory_depth).

A panel holds plain networks without a norm layer that share an activation, a sigma_b^2 and every other swept
setting, and is drawn when they take at least two depths and two hidden-layer sigma_w^2. A cell's accuracy is the
mean final test accuracy of its seeds that did not diverge. A cell is trainable when that accuracy is above chance
plus half the way from chance to the panel's best cell (a cell whose every seed diverged is not), and predicted
trainable when its depth is below 6 xi_c at its sigma_w^2. Where the length map has no fixed point (ReLU above
sigma_w^2 = 2: the signal grows without bound) xi_c is undefined, and such cells are left out of the comparison.
"""

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.accuracy import seed_mean_accuracy
from analysis.chance import chance_accuracy
from analysis.families import has_mean_field_theory
from analysis.predict import recorded_sigma_b2, setting
from analysis.series import key_values, setting_keys, swept_keys
from gradlab.theory import weight_scale
from gradlab.theory_depth import critical_sigma_w2, depth_scales

DEPTH_SCALES = 6  # Schoenholz et al.: a network trains when its depth is below about 6 xi_c
TRAINABLE_SHARE = 0.5  # trainable: above chance + this share of the way from chance to the best cell
CURVE_POINTS = 41
THEORY_FOR = ("plain", "none")  # (arch, norm): the networks whose depth scales the theory gives
NOT_PANEL_KEYS = {"depth", "init", "init_gain", "bias_std", "activation"}  # they place a run on the grid instead


def hidden_sigma_w2(run: tuple) -> float:
    """sigma_w^2 of a hidden-to-hidden layer: recorded (layer 2) where the run has one, else by its init's variance."""
    if isinstance(run.sigma_w2, tuple) and len(run.sigma_w2) >= 3:
        return float(run.sigma_w2[1])
    return weight_scale(run.init, int(run.width), int(run.width), float(run.init_gain))


def grid_runs(runs: pd.DataFrame, config_keys: Iterable[str]) -> pd.DataFrame:
    """The runs the map can place: of a family the mean-field theory describes, plain, unnormalized, finished; with
    sigma_w2, sigma_b2, chance and panel."""
    places = [has_mean_field_theory(run) and (setting(run, "arch"), setting(run, "norm")) == THEORY_FOR
              and run.status in ("completed", "diverged") for run in runs.itertuples(index=False)]
    kept = runs[places]
    if kept.empty:
        return kept.assign(sigma_w2_hidden=[], sigma_b2_recorded=[], chance=[], panel_key=[])
    kept = kept.assign(sigma_w2_hidden=[round(hidden_sigma_w2(run), 4) for run in kept.itertuples(index=False)],
                       sigma_b2_recorded=[round(recorded_sigma_b2(run), 6) for run in kept.itertuples(index=False)],
                       chance=[chance_accuracy(run) for run in kept.itertuples(index=False)])
    rest = [key for key in swept_keys(kept, setting_keys(config_keys)) if key not in NOT_PANEL_KEYS]
    labels = [f"{run.activation} · sigma_b^2={run.sigma_b2_recorded:.3g}" for run in kept.itertuples(index=False)]
    others = key_values(kept, rest) if rest else [""] * len(kept)
    return kept.assign(panel_key=[f"{label} · {other}" if other else label for label, other in zip(labels, others,
                                                                                                    strict=True)])


def panel_cells(group: pd.DataFrame) -> pd.DataFrame:
    """One row per (sigma_w2, depth): accuracy (mean over seeds that did not diverge), diverged and run counts."""
    grid = ["sigma_w2_hidden", "depth"]
    cells = seed_mean_accuracy(group, grid).join(group.groupby(grid).steps.max()).reset_index()
    floor = group.chance.dropna().iloc[0] if group.chance.notna().any() else cells.accuracy.min()
    threshold = floor + TRAINABLE_SHARE * (cells.accuracy.max() - floor)
    return cells.rename(columns={"sigma_w2_hidden": "sigma_w2"}).assign(
        chance=floor, threshold=threshold, trainable=cells.accuracy > threshold)


def theory_curve(activation: str, sigma_b2: float, lo: float, hi: float) -> pd.DataFrame:
    """6 xi_c at CURVE_POINTS sigma_w^2 from lo to hi (evenly on a log scale when that spans a decade or more),
    and either side of the edge of chaos between them, where it diverges."""
    points = np.geomspace(lo, hi, CURVE_POINTS) if hi >= 10 * lo else np.linspace(lo, hi, CURVE_POINTS)
    edge = critical_sigma_w2(activation, sigma_b2)
    points = np.sort(np.append(points, [edge * (1 - 1e-3), edge * (1 + 1e-3)])) if edge and lo < edge < hi else points
    depths = [DEPTH_SCALES * depth_scales(activation, float(s), sigma_b2).xi_c for s in points]
    return pd.DataFrame({"sigma_w2": points, "depth": depths})


def panel_rows(panel: str, group: pd.DataFrame) -> pd.DataFrame:
    """A panel's cells, the theory's curve over its sigma_w^2 range and the edge of chaos (NaN where none)."""
    activation, sigma_b2 = group.activation.iloc[0], float(group.sigma_b2_recorded.iloc[0])
    cells = panel_cells(group)
    centres = np.sort(cells.sigma_w2.unique())  # the curve spans the outer cells' edges on a linear or log axis
    lo = min(centres[0] - (centres[1] - centres[0]) / 2, centres[0] * np.sqrt(centres[0] / centres[1]))
    hi = max(centres[-1] + (centres[-1] - centres[-2]) / 2, centres[-1] * np.sqrt(centres[-1] / centres[-2]))
    curve = theory_curve(activation, sigma_b2, max(lo, 1e-3), hi)
    by_point = cells.sigma_w2.map({s: DEPTH_SCALES * depth_scales(activation, float(s), sigma_b2).xi_c
                                   for s in cells.sigma_w2.unique()})
    cells = cells.assign(predicted=(cells.depth < by_point).where(by_point.notna()))  # NaN: no xi_c to compare
    edge = critical_sigma_w2(activation, sigma_b2)
    critical = pd.DataFrame({"sigma_w2": [math.nan if edge is None else edge]})
    frames = [cells.assign(source="cell"), curve.assign(source="theory"), critical.assign(source="critical")]
    return pd.concat(frames, ignore_index=True).assign(panel=panel, activation=activation, sigma_b2=sigma_b2)


def trainability_rows(runs: pd.DataFrame, config_keys: Iterable[str]) -> pd.DataFrame:
    """Every panel's rows (source: cell, theory or critical), for the panels with two depths and two sigma_w^2."""
    placed, frames = grid_runs(runs, config_keys), []
    for panel, group in placed.groupby("panel_key", sort=False):
        if group.depth.nunique() >= 2 and group.sigma_w2_hidden.nunique() >= 2:
            frames.append(panel_rows(panel, group))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["panel", "source"])


def agreement(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per panel: the edge of chaos, the threshold, and how many cells fall on the predicted side."""
    table = []
    for panel, group in rows.groupby("panel", sort=False):
        cells, edge = group[group.source == "cell"], group[group.source == "critical"].sigma_w2.iloc[0]
        compared = cells[cells.predicted.notna()]
        same_side = compared.trainable.astype(bool) == compared.predicted.astype(bool)
        table.append({"panel": panel, "edge of chaos sigma_w^2": edge, "chance": cells.chance.iloc[0],
                      "threshold": cells.threshold.iloc[0], "cells": len(cells), "compared": len(compared),
                      "trainable": int(cells.trainable.astype(bool).sum()),
                      "predicted trainable": int(compared.predicted.astype(bool).sum()),
                      "on the predicted side": float(same_side.mean()) if len(compared) else math.nan})
    return pd.DataFrame(table)
