"""Figures compare at a glance: panels of one quantity share their axes, grids have no empty cells, legends sit
beside the panels, a diverged run is marked where it diverged, series of a sweep are told apart by eye, and the
chance level comes from what a run recorded.

Expected values come from definitions: CIE L*a*b* distances of sRGB colors, torch's cross-entropy of a uniform
guess, the union of the panels' ranges.
"""

import itertools
import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import QuadMesh

from analysis import figures_training
from analysis.catalog import Inputs, figure_6
from analysis.chance import chance_loss
from analysis.layout import facet_grid, wrap_columns
from analysis.style import OFF_SCALE_LABEL, series_color
from gradlab.activations import ACTIVATIONS


def loss_rows(run: int, init: str, final: float, activation: str = "tanh", status: str = "completed",
              diverged_at: float = math.nan) -> pd.DataFrame:
    """A run's batch and test loss over steps 0..20, falling geometrically from 2.3 to `final`."""
    steps = np.arange(0, 21, 5)
    values = 2.3 * (final / 2.3) ** (steps / 20)
    frame = pd.concat([pd.DataFrame({"step": steps, "name": name, "value": values})
                       for name in ("batch_loss", "test_loss")], ignore_index=True)
    return frame.assign(run=run, layer=np.nan, activation=activation, init=init, depth=4, seed=0, series="depth=4",
                        line="depth=4", shade=1.0, column=init, status=status, diverged_at_step=diverged_at,
                        chance_loss=math.log(10))


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]


def test_panels_of_one_quantity_share_x_and_y_limits_and_label_the_outer_axes_only():
    at_chance, learning = loss_rows(0, "normal", 2.3), loss_rows(1, "kaiming_normal", 0.01)
    fig = facet_grid(pd.concat([at_chance, learning]), figures_training.loss_curves)
    first, second = panels(fig)
    assert first.get_ylim() == second.get_ylim() and first.get_xlim() == second.get_xlim()
    low, high = first.get_ylim()
    assert low <= 0.01 and high >= 2.3  # the union of both panels' ranges
    assert any(label.get_visible() and label.get_text() for label in first.get_yticklabels())
    assert not any(label.get_visible() and label.get_text() for label in second.get_yticklabels(which="both"))
    plt.close(fig)


def test_a_grid_with_missing_pairs_is_wrapped_into_one_row_without_empty_cells():
    frames = [loss_rows(0, "lecun_normal", 0.5), loss_rows(1, "orthogonal", 0.1),
              loss_rows(2, "kaiming_normal", 2.3, activation="relu")]  # relu has one column, tanh two
    fig = facet_grid(pd.concat(frames), figures_training.loss_curves)
    drawn = panels(fig)
    assert len(fig.axes) == 3 and len(drawn) == 3  # no switched-off cell
    assert len({round(ax.get_position().y0, 6) for ax in drawn}) == 1  # one row
    plt.close(fig)


@pytest.mark.parametrize("count, columns", [(1, 1), (3, 3), (5, 5), (6, 3), (7, 4), (8, 4), (9, 3), (10, 5)])
def test_wrapped_panels_leave_the_fewest_empty_cells(count: int, columns: int):
    assert wrap_columns(count) == columns


def test_each_rows_legend_sits_beside_its_panels_and_inside_the_figure():
    frames = [loss_rows(run, init, final, activation)
              for run, (activation, init, final) in enumerate(itertools.product(("tanh", "relu"),
                                                                               ("normal", "kaiming_normal"), (0.1,)))]
    fig = facet_grid(pd.concat(frames), figures_training.loss_curves)
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 2  # one per row (activation)
    right_of_panels = max(ax.get_window_extent(renderer).x1 for ax in panels(fig))
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert right_of_panels < box.x0 and box.x1 <= fig.get_figwidth() * fig.dpi
        assert "chance: ln 10 = 2.30" in [text.get_text() for text in legend.get_texts()]
    plt.close(fig)


def test_a_divergence_off_the_scale_is_pinned_to_the_top_edge_at_its_step():
    blown_up = loss_rows(1, "normal", 1e20, status="diverged", diverged_at=17.0)  # finite up to step 20: 1e20
    fig = facet_grid(pd.concat([loss_rows(0, "normal", 0.1), blown_up]), figures_training.loss_curves)
    [ax] = panels(fig)
    low, high = ax.get_ylim()
    assert high < 1e3  # the scale follows the run that trained, not the one that blew up
    pinned = [c for c in ax.collections if c.get_label() == OFF_SCALE_LABEL]
    assert [c.get_offsets().tolist() for c in pinned] == [[[17.0, pytest.approx(high)]]]
    texts = [text.get_text() for text in ax.get_legend().get_texts()]
    assert OFF_SCALE_LABEL in texts and "diverged here" not in texts  # no cross was left inside
    plt.close(fig)


def cie_lab(rgb: tuple[float, float, float]) -> np.ndarray:
    """sRGB (0..1) to CIE L*a*b* under D65, by the definitions of both."""
    linear = np.where(np.asarray(rgb) <= 0.04045, np.asarray(rgb) / 12.92, ((np.asarray(rgb) + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.cbrt(xyz / np.array([0.95047, 1.0, 1.08883]))
    f = np.where(f > 6 / 29, f, (xyz / np.array([0.95047, 1.0, 1.08883])) / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_neighbouring_series_of_a_sweep_are_told_apart_by_eye(activation: str):
    """Three depths (shades 1/3, 2/3, 1): each next one at least 20 CIE76 units away (2.3 is a just-noticeable
    difference); depth 10 and 30 of sigmoid were two navies before."""
    colors = [cie_lab(series_color(activation, shade)) for shade in (1 / 3, 2 / 3, 1.0)]
    for lighter, darker in itertools.pairwise(colors):
        assert np.linalg.norm(lighter - darker) >= 20
        assert lighter[0] > darker[0] + 15  # and darker: lightness tells the order


def test_figure_6_is_one_heat_map_with_one_colour_bar_and_a_column_per_depth_in_order():
    configs = list(itertools.product(("sigmoid", "relu"), ("normal", "kaiming_normal"), (2, 10, 30)))
    runs = pd.DataFrame([{"run": run, "net": "mlp", "activation": activation, "init": init, "depth": depth, "seed": 0,
                          "final_test_accuracy": 0.9 if depth < 30 else 0.1, "status": "completed"}
                         for run, (activation, init, depth) in enumerate(configs)])
    fig = figure_6(Inputs(runs, pd.DataFrame(), pd.DataFrame(), ["depth", "activation", "init", "seed"]))
    assert len(fig.axes) == 2 and fig.axes[1].get_label() == "<colorbar>"  # the heat map and its one colour bar
    heat_map = fig.axes[0]
    [mesh] = [c for c in heat_map.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().shape == (4, 3)  # (activation, init) x depth
    assert [t.get_text() for t in heat_map.get_xticklabels()] == ["2", "10", "30"]  # as numbers, not as text
    assert heat_map.get_xlabel() == "depth" and heat_map.get_ylabel() == "activation · init"
    plt.close(fig)


def test_chance_loss_is_the_cross_entropy_of_a_uniform_guess_over_the_recorded_classes():
    ten = torch.nn.functional.cross_entropy(torch.zeros(1, 10), torch.tensor([3])).item()
    binary = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(1), torch.ones(1)).item()
    assert chance_loss(SimpleNamespace(layer_sizes=(64, 32, 10), loss_in_force="cross_entropy")) == pytest.approx(ten)
    assert chance_loss(SimpleNamespace(layer_sizes=(2, 16, 1), loss_in_force="bce")) == pytest.approx(binary)
    assert math.isnan(chance_loss(SimpleNamespace(layer_sizes=None, loss_in_force="cross_entropy")))
    assert math.isnan(chance_loss(SimpleNamespace(layer_sizes=(64, 10), loss_in_force=None)))
