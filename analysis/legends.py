"""Labels off the data: each row's panel legends gathered into one legend beside the row (the figure widened to hold
it), and plain tick labels (0.2, 0.5, 1, 2) on a log axis that spans few decades, not 2 x 10^-1 on every tick."""

import math
from collections.abc import Collection

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgba_array
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import FuncFormatter

LEGEND_GAP = 0.12  # inches between a row's last panel and its legend
LEGEND_ROWS = 14  # entries in a legend's column before it takes a second one
RIGHT_PAD = 0.15  # inches between a legend and the figure's right edge
PLAIN_RANGE = (1e-3, 1e4)  # a log axis inside this range that spans at most PLAIN_DECADES gets plain labels
PLAIN_DECADES = 2.5


def color_key(handle: Artist) -> str:
    """The color an entry is drawn in: two entries of one label in different colors are two entries."""
    for getter in ("get_color", "get_edgecolor", "get_facecolor"):
        if hasattr(handle, getter):
            colors = to_rgba_array(getattr(handle, getter)())  # a row per color: one for a line, a patch, a marker
            return to_hex(colors[0], keep_alpha=True) if len(colors) else ""
    return ""


def entries(panels: list[Axes]) -> tuple[list[Artist], list[str], list[Axes]]:
    """The panels' legend entries, each (label, color) once: every panel's legend (less the entries it hid), and any
    labelled artist added after the legend was made (a divergence marker pinned to an edge). A panel's entry that is
    new goes before the next of its panel's entries already listed: each panel's series before the shared guides.
    Each entry comes with the first panel that drew it."""
    order, handles, owners = [], {}, {}
    for ax in panels:
        legend = ax.get_legend()
        pairs = [(handle, text.get_text()) for handle, text in zip(legend.legend_handles, legend.texts, strict=True)
                 if text.get_visible()] if legend else []
        listed = {label for _, label in pairs}
        pairs += [(h, label) for h, label in zip(*ax.get_legend_handles_labels(), strict=True) if label not in listed]
        keys = [(label, color_key(handle)) for handle, label in pairs]
        for index, (key, (handle, _)) in enumerate(zip(keys, pairs, strict=True)):
            if key not in handles:
                later = [order.index(k) for k in keys[index + 1:] if k in handles]
                order.insert(later[0] if later else len(order), key)
                handles[key], owners[key] = handle, ax
    return [handles[key] for key in order], [label for label, _ in order], [owners[key] for key in order]


def told_apart(labels: list[str], handles: list[Artist], panels: list[Axes]) -> list[str]:
    """A label drawn in several colors (depth=32 in each activation's panel) named by its panel's first title part."""
    colors: dict[str, set[str]] = {}
    for label, handle in zip(labels, handles, strict=True):
        colors.setdefault(label, set()).add(color_key(handle))
    return [f"{ax.get_title().split(' · ')[0].splitlines()[0]}: {label}" if len(colors[label]) > 1 else label
            for label, handle, ax in zip(labels, handles, panels, strict=True)]


def legends_beside_rows(fig: Figure, axes: np.ndarray, series: Collection[str] = ()) -> list[Legend]:
    """Each row's entries in one legend right of the row's last panel, the series' labels first, unless the row
    above has the same entries; the panels' own legends removed."""
    placed, above = [], None
    for row in axes:
        panels = [ax for ax in row if ax.axison]
        ordered = sorted(zip(*entries(panels), strict=True), key=lambda entry: entry[1] not in series)  # stable
        handles, labels, owners = zip(*ordered, strict=True) if ordered else ((), (), ())
        pairs = list(zip(handles, told_apart(list(labels), list(handles), list(owners)), strict=True))
        for ax in panels:
            if ax.get_legend():
                ax.get_legend().remove()
        same = [(label, color_key(handle)) for handle, label in pairs]
        if pairs and same != above:
            handles, labels = zip(*pairs, strict=True)
            last = panels[-1]
            gap = LEGEND_GAP / (last.get_position().width * fig.get_figwidth())
            placed.append(last.legend(handles, labels, loc="upper left", bbox_to_anchor=(1 + gap, 1),
                                      borderaxespad=0, fontsize="x-small", frameon=False,
                                      ncol=math.ceil(len(handles) / LEGEND_ROWS)))
        above = same
    widen_for(fig, placed)
    return placed


def widen_for(fig: Figure, legends: list[Legend]) -> None:
    """The figure made wider on the right until the legends fit, its panels keeping their size and place."""
    if not legends:
        return
    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth()
    extra = max(legend.get_window_extent(renderer).x1 for legend in legends) / fig.dpi + RIGHT_PAD - width
    if extra <= 0:
        return
    grid = legends[0].axes.get_subplotspec().get_topmost_subplotspec().get_gridspec()  # its margins, not the figure's
    left, right = grid.left * width, grid.right * width
    fig.set_size_inches(width + extra, fig.get_figheight())
    grid.update(left=left / (width + extra), right=right / (width + extra))


def leading_digit(value: float) -> int:
    return round(value / 10 ** math.floor(math.log10(value) + 1e-9))


def plain_log_labels(ax: Axes) -> None:
    """Plain numbers on each log axis of the panel within PLAIN_RANGE and PLAIN_DECADES: every minor tick labelled
    under a decade, else those at 2 and 5."""
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() != "log":
            continue
        low, high = sorted(axis.get_view_interval())
        if low < PLAIN_RANGE[0] or high > PLAIN_RANGE[1] or high / low > 10**PLAIN_DECADES:
            continue
        every = high / low < 10
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(FuncFormatter(
            lambda value, _, every=every: f"{value:g}" if every or leading_digit(value) in (2, 5) else ""))
