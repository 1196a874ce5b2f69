"""Style shared by every figure: one hue per activation, seeds as a mean and a band, and the divergence marker.

Lines within a panel are the swept series (depth, width, ...), drawn from light to dark in the activation's hue at
evenly spaced perceived lightness (HUSL), so that neighbouring series stay apart. A panel of a facet grid holds one
init, named in its title, so its lines are solid; the init's line style (INIT_STYLES) tells inits apart where one
panel holds several (figure 4). Theory is a thin black line, dashed where it runs beside solid measurements.
"""

import math
import textwrap
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from seaborn.external import husl

from gradlab.activations import ACTIVATIONS

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
# HUSL hues in degrees, far apart: each series' lightness then shows its place in the sweep (see series_color).
ACTIVATION_HUES = {"sigmoid": 250, "tanh": 30, "relu": 128, "leaky_relu": 190, "elu": 285, "selu": 90,
                   "gelu": 0, "softplus": 325, "linear": None}  # None: gray
GOLDEN_ANGLE = 137.5  # hue steps for activations registered later: far from their neighbours
LIGHTEST, DARKEST = 85.0, 25.0  # HUSL lightness of a series at shade 0 and shade 1
HUE_DRIFT, YELLOW = 24.0, 85.0  # degrees a series' hue leans between shade 0 and 1; HUSL's yellow
INIT_STYLES = {
    "normal": (0, (1, 1.5)),  # dotted
    "uniform": (0, (6, 2, 1, 2)),  # dash-dot
    "xavier_uniform": "-",
    "xavier_normal": (0, (9, 3)),  # long dashes
    "kaiming_uniform": (0, (3, 1, 1, 1, 1, 1)),  # dash-dot-dot
    "kaiming_normal": (0, (4, 2)),  # dashes
    "lecun_normal": (0, (1, 1, 1, 1, 6, 2)),
    "orthogonal": (0, (12, 2, 2, 2)),
}
THEORY = {"color": "black", "linewidth": 1.1, "alpha": 0.85}
THEORY_DASHES = (0, (5, 2.5))  # theory beside solid measured lines
AT_INIT = {"linewidth": 1.1, "linestyle": (0, (3, 2)), "alpha": 0.75}  # a profile at step 0: thin, dashed, light
AT_END = {"linewidth": 2.2, "linestyle": "-"}  # the same profile at the end of training: thick, solid
DIVERGED = {"marker": "X", "s": 60, "color": "crimson", "zorder": 5, "clip_on": False}
DIVERGED_GID = "diverged"
DIVERGED_LABEL = "diverged here"
OFF_SCALE_LABEL = "diverged, off the scale (at the edge)"
TITLE_WIDTH = 44  # characters that fit over a panel


def series_color(activation: str, shade: float) -> tuple[float, float, float]:
    """The activation's hue, light for shade near 0 and dark for shade 1, at evenly spaced perceived lightness; the
    hue leans toward yellow as it lightens and away as it darkens (as sequential palettes do), so that neighbouring
    series differ in hue as well as lightness."""
    names = list(ACTIVATIONS)
    index = names.index(activation) if activation in names else len(names)
    hue = ACTIVATION_HUES.get(activation, (index * GOLDEN_ANGLE) % 360)
    lightness = LIGHTEST - (LIGHTEST - DARKEST) * shade
    if hue is None:
        return tuple(float(c) for c in np.clip(husl.husl_to_rgb(0, 0, lightness), 0, 1))
    toward_yellow = ((YELLOW - hue + 180) % 360) - 180  # signed degrees from the hue to yellow
    hue += math.copysign(HUE_DRIFT, toward_yellow) * (0.5 - shade) if abs(toward_yellow) > 1 else 0
    return tuple(float(c) for c in np.clip(husl.husl_to_rgb(hue % 360, 90, lightness), 0, 1))


def init_style(init: str) -> str | tuple:
    return INIT_STYLES.get(init, "-")


def seed_band(df: pd.DataFrame, x: str, log: bool) -> pd.DataFrame:
    """Mean over seeds at each x, with the band min..max; means of log10 values when log (a geometric mean)."""
    values = df.assign(value=np.log10(df.value.where(df.value > 0)) if log else df.value)
    values = values[np.isfinite(values.value)]
    band = values.groupby(x).value.agg(["mean", "min", "max"]).reset_index()
    if log:
        band[["mean", "min", "max"]] = 10 ** band[["mean", "min", "max"]]
    return band


def draw_series(ax: Axes, df: pd.DataFrame, x: str, log: bool, **line: object) -> None:
    """One line through the seed mean of df's values against x, and a band where there is more than one seed."""
    band = seed_band(df, x, log)
    if band.empty:
        return
    if len(band) == 1:
        line = {"marker": "o", **line}  # a single point draws no line
    (drawn,) = ax.plot(band[x], band["mean"], **line)
    if df.run.nunique() > 1:
        ax.fill_between(band[x], band["min"], band["max"], color=drawn.get_color(), alpha=0.2, linewidth=0)


@contextmanager
def off_the_scale(ax: Axes) -> Iterator[None]:
    """What is drawn inside leaves the axes' data limits as they were, so that the scale, shared by the panels of a
    figure, follows the runs that trained and not one that blew up (a panel of diverged runs alone takes the
    others' scale: layout.share_limits)."""
    before, empty = ax.dataLim.frozen(), ax.ignore_existing_data_limits
    yield
    ax.dataLim.set(before)
    ax.ignore_existing_data_limits = empty


def draw_series_and_diverged(ax: Axes, df: pd.DataFrame, x: str, log: bool, **line: object) -> None:
    """draw_series over the seeds that did not diverge; each diverged seed as a thin line of its own, off the scale.
    A series whose every seed diverged is named in the legend by an empty line drawn as its others would be."""
    kept, diverged = df[df.status != "diverged"], df[df.status == "diverged"]
    draw_series(ax, kept, x, log, **line)
    if kept.empty and not diverged.empty and line.get("label"):
        ax.plot([], [], **line)
    with off_the_scale(ax):
        for _, run in diverged.groupby("run"):
            draw_series(ax, run, x, log, **{**line, "linewidth": 0.8, "alpha": 0.8, "label": None})


def by_series(df: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    """The series in df, lightest first, each with its legend label (its `line` where df has one)."""
    for _, rows in sorted(df.groupby("series", sort=False, observed=True), key=lambda item: item[1].shade.iloc[0]):
        yield (rows.line if "line" in rows else rows.series).iloc[0], rows


def say_empty(ax: Axes, message: str = "no finite values recorded") -> None:
    """The message in the middle of the panel, broken into lines that fit it; the panel keeps its axes, to take a
    shared scale's limits and ticks, but does not widen them (layout.drawn)."""
    ax.text(0.5, 0.5, textwrap.fill(message, TITLE_WIDTH), ha="center", va="center", transform=ax.transAxes,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9})
    ax.set_gid("empty")


def mark_divergence(ax: Axes, df: pd.DataFrame) -> bool:
    """A red cross per diverged run in df (rows of one metric) at the step where it diverged (its recorded
    diverged_at_step, else its last step) and its last finite value; whether any was drawn. Off the scale (see
    pin_off_scale)."""
    diverged = df[(df.status == "diverged") & np.isfinite(df.value)]
    ends = diverged.sort_values("step").groupby("run", observed=True).tail(1)
    if ends.empty:
        return False
    at_step = ends.diverged_at_step.astype(float) if "diverged_at_step" in ends else ends.step.astype(float)
    with off_the_scale(ax):
        ax.scatter(at_step.fillna(ends.step.astype(float)), ends.value, gid=DIVERGED_GID, **DIVERGED)
    return True


def pin_off_scale(ax: Axes) -> None:
    """Divergence crosses beyond the axes' limits moved onto the edge they passed, as triangles pointing off it; where
    none is left inside, the panel legend's cross entry is hidden (legends.entries leaves it out)."""
    low, high = sorted(ax.get_ylim())
    for crosses in [c for c in ax.collections if c.get_gid() == DIVERGED_GID]:
        points = crosses.get_offsets()
        above, below = points[:, 1] > high, points[:, 1] < low
        crosses.set_offsets(points[~above & ~below])
        for side, edge, marker in ((above, high, "^"), (below, low, "v")):
            if side.any():
                ax.scatter(points[side, 0], np.full(side.sum(), edge), label=OFF_SCALE_LABEL,
                           **{**DIVERGED, "marker": marker})
    if not any(len(c.get_offsets()) for c in ax.collections if c.get_gid() == DIVERGED_GID):
        for artist in [line for line in ax.get_lines() if line.get_label() == DIVERGED_LABEL]:
            artist.set_label("_" + DIVERGED_LABEL)
        for text in ax.get_legend().get_texts() if ax.get_legend() else []:
            text.set_visible(text.get_text() != DIVERGED_LABEL)


def small_legend(ax: Axes, **kwargs: object) -> None:
    """The panel's legend; a facet grid moves it beside the panels (layout.legends_beside_rows)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", framealpha=0.8, **kwargs)


def ordered(values: pd.Series, registry: Iterable[str]) -> list:
    """The distinct values, registry order first (activations, inits), then sorted."""
    present = list(values.dropna().unique())
    return [v for v in registry if v in present] + sorted(v for v in present if v not in registry)
