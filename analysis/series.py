"""Series: which runs are seeds of one configuration, and the labels that name each series in the figures.

A series is every run whose configs agree on every key that can change the result: every key of the job's
.hydra/config.yaml, flattened to dotted names (dataset.kind), except the seed, which a series averages over,
and BOOKKEEPING_KEYS. No list of keys to consider: a key added to the config later splits series by itself.
"""

import math
from collections.abc import Iterable, Mapping

import pandas as pd

from gradlab.inits import INITS

# Keys that say where a run's records go, what else is measured or how a sweep is re-run, never what is trained:
# W&B's mode, project and entity (a copy of the metrics elsewhere), skip_completed (whether a re-run sweep
# retrains a job), data_dir (where the same data set is read from), device (the same float32 math on cpu or cuda,
# from the same seeded CPU generator), jacobian.* (J of fixed test examples, in evaluation mode: it draws
# nothing from the generators and updates nothing), curvature.* (the sharpness, on a float64 copy of the
# network) and eval_every (the full sets' losses in evaluation mode). Two seeds that differ only in these are seeds of
# one configuration.
BOOKKEEPING_KEYS = ("logger", "skip_completed", "data_dir", "device", "jacobian", "curvature", "eval_every")
SEED = "seed"
# Config keys added after runs were first recorded, each with the one value every run had before it existed: a
# record without the key ran with that value (a plain, unnormalized network trained by SGD, biases at 0), so it is
# filled in and an old run is a seed of the same series as a new one that sets it.
KEYS_ADDED_LATER = {"arch": "plain", "norm": "none", "residual_scale": 1.0, "optimizer.name": "sgd", "bias_std": 0.0,
                    "dtype": "float32"}
FACETS = ("activation", "init")  # the figures' rows and columns: in every panel title, never in a line's label
ONE_SHADE = 0.7  # a sweep of one series: dark enough to read, light enough to show its activation's hue
LABELS = ["series", "line", "curve", "shade", "panel", "column", "column_order"]


def flatten(config: Mapping, prefix: str = "") -> dict[str, object]:
    """{"dataset": {"kind": "xor"}} -> {"dataset.kind": "xor"}; a list becomes a tuple, to compare and hash."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def is_bookkeeping(key: str) -> bool:
    return any(key == root or key.startswith(f"{root}.") for root in BOOKKEEPING_KEYS)


def setting_keys(config_keys: Iterable[str]) -> list[str]:
    """The config keys that can change a run's result, less the seed: the ones that tell series apart."""
    return [key for key in config_keys if key != SEED and not is_bookkeeping(key)]


def swept_keys(runs: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """The keys, in their order, that take more than one value among the runs (a missing value is one)."""
    return [key for key in keys if key in runs and runs[key].nunique(dropna=False) > 1]


def curve_keys(runs: pd.DataFrame, config_keys: Iterable[str]) -> list[str]:
    """The swept keys that a line's label names beside its depth: all but the facets and depth."""
    return [key for key in swept_keys(runs, setting_keys(config_keys)) if key not in (*FACETS, "depth")]


def describe(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def key_values(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per run: "k1=v1, k2=v2" over the keys, in their order."""
    return [", ".join(f"{k}={describe(v)}" for k, v in zip(keys, row, strict=True))
            for row in runs[keys].itertuples(index=False, name=None)]


def label_series(runs: pd.DataFrame, config_keys: Iterable[str]) -> pd.DataFrame:
    """Add series (what a line stands for), line (its label beside the panel's title), curve (series less depth),
    shade (0 to 1]: by depth where depth is swept, else by series), panel, and column (init and curve: the facet
    column) with column_order."""
    others = curve_keys(runs, config_keys)
    depth_swept = runs.depth.nunique(dropna=False) > 1
    keys = (["depth"] if depth_swept or not others else []) + others
    runs = runs.assign(series=key_values(runs, keys), curve=key_values(runs, others))
    if depth_swept:  # a panel's lines differ by depth alone: one shade per depth, the same in every panel
        order, by = sorted(runs.depth.unique()), runs.depth
    else:
        order, by = list(runs.sort_values(keys, na_position="first").series.unique()), runs.series
    runs["shade"] = by.map(lambda v: (order.index(v) + 1) / len(order) if len(order) > 1 else ONE_SHADE)  # last darkest
    runs["line"] = [f"depth={d}" for d in runs.depth] if depth_swept else runs.series  # the rest is in the title
    runs["column"] = runs.init + runs.curve.map(lambda c: f" · {c}" if c else "")
    runs["panel"] = runs.activation + " · " + runs.column
    curves = list(runs.sort_values(others, na_position="first").curve.unique()) if others else [""]
    inits = list(INITS)
    runs["column_order"] = [(inits.index(i) if i in inits else len(inits)) * len(curves) + curves.index(c)
                            for i, c in zip(runs.init, runs.curve, strict=True)]
    return runs
