"""The best over a swept key: `python analysis/report.py --best-over lr --by learning_step`.

Saxe et al. (2014) compare the learning time of deep linear networks at the best learning rate for each depth and
init, not at one fixed rate. This takes any swept key (lr, momentum, ...) and any per-run measure where lower is
better (learning_step, final_test_loss, ...): for each configuration the key does not set apart, the value of the key
whose seeds' mean measure is lowest, a run that never got there (empty) counting as worse than any that did.
load -> best_rows (a table) -> best_over_curves (one panel) and best_over_section (the page's paragraph).
"""

import html
import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.series import describe, setting_keys, swept_keys
from analysis.style import series_color

NEVER = "never"


def best_rows(runs: pd.DataFrame, key: str, by: str, config_keys: list[str]) -> pd.DataFrame:
    """One row per configuration but `key`: its swept keys, the best value of `key`, the seed mean of `by` there
    (NaN where no value of the key ever got there), and the values of `key` tried."""
    if key not in runs or by not in runs:
        raise ValueError(f"--best-over {key} --by {by}: the runs have no column {key if key not in runs else by}; "
                         f"expected a swept config key and a runs.csv column")
    group_keys = [k for k in swept_keys(runs, setting_keys(config_keys)) if k != key]
    rows = []
    for values, group in runs.groupby(group_keys, dropna=False, sort=True) if group_keys else [((), runs)]:
        means = group.groupby(key)[by].agg(lambda v: v.astype(float).fillna(math.inf).mean())
        best = means.idxmin()
        reached = math.isfinite(means[best])
        rows.append({**dict(zip(group_keys, values if isinstance(values, tuple) else (values,), strict=True)),
                     key: best if reached else None, by: means[best] if reached else math.nan,
                     f"{key} tried": ", ".join(describe(v) for v in sorted(means.index))})
    return pd.DataFrame(rows)


def best_over_curves(rows: pd.DataFrame, ax: Axes, key: str, by: str, x: str = "depth") -> None:
    """`by` at the best `key` against `x`, one line per configuration left (init, ...), each point labelled with the
    best value of `key`; a configuration that never got there at some x is marked at the panel's top edge."""
    lines = [k for k in rows.columns if k not in (x, key, by, f"{key} tried")]
    top = np.nanmax(rows[by].to_numpy(float)) * 1.15 if rows[by].notna().any() else 1.0
    for shade, (label, own) in enumerate(rows.groupby(lines, sort=True) if lines else [((), rows)], start=1):
        own = own.sort_values(x)
        name = ", ".join(describe(v) for v in (label if isinstance(label, tuple) else (label,)))
        color = series_color(own.activation.iloc[0] if "activation" in own else "linear",
                             shade / max(1, rows.groupby(lines).ngroups if lines else 1))
        reached = own[own[by].notna()]
        ax.plot(reached[x], reached[by], marker="o", color=color, linewidth=1.6, label=name)
        for point in reached.itertuples(index=False):
            ax.annotate(f"{key}={describe(getattr(point, key))}", (getattr(point, x), getattr(point, by)),
                        textcoords="offset points", xytext=(4, 4), fontsize="x-small", color=color)
        never = own[own[by].isna()]
        ax.scatter(never[x], [top] * len(never), marker="^", color=color, clip_on=False, zorder=5)
    if rows[by].isna().any():
        ax.scatter([], [], marker="^", color="0.4", label=f"{NEVER}, at every {key}")
    ax.set_ylim(0, top * 1.02)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(rows[x].unique()), [f"{v:g}" for v in sorted(rows[x].unique())])
    ax.set_xlabel(x)
    ax.set_ylabel(f"{by} at the best {key}")
    if ax.get_legend_handles_labels()[0]:  # one configuration alone has no label
        ax.legend(fontsize="small", framealpha=0.9, loc="upper left")


def best_over_section(rows: pd.DataFrame, key: str, by: str) -> str:
    """The page's paragraph and table for --best-over."""
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(NEVER if c == by and pd.isna(v) else describe(v))}</td>"
                                    for c, v in record.items()) + "</tr>" for record in rows.to_dict("records"))
    return (f"<h3>{html.escape(by)} at the best {html.escape(key)} (figure 13)</h3><p>For each configuration, the "
            f"value of <code>{html.escape(key)}</code> whose mean <code>{html.escape(by)}</code> over seeds is lowest "
            f"(a run that never got there counts as worse than any that did; {NEVER}: at no value tried).</p>"
            f"<table><tr>{header}</tr>{body}</table>")
