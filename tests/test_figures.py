"""Each figure function draws from a small tidy DataFrame built here: lines, scales, markers and labels."""

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.lines import Line2D

from analysis import figures_init, figures_training, needs
from analysis.layout import facet_grid, set_title
from analysis.style import INIT_STYLES, THEORY, series_color
from gradlab.activations import ACTIVATIONS
from gradlab.inits import INITS


def run_rows(run: int, depth: int, seed: int = 0, status: str = "completed", steps: int = 15) -> pd.DataFrame:
    """A run's tidy metrics: delta_rms halving toward the input, flat grad_norm, losses falling over steps."""
    rows = []
    for step in range(0, steps + 1, 5):
        for layer in range(1, depth + 1):
            rows += [(step, layer, "delta_rms", 0.5 ** (depth - layer)), (step, layer, "grad_norm", 0.3 + step),
                     (step, layer, "update_ratio", 1e-3 * layer)]
            if layer < depth:
                rows += [(step, layer, "saturation", 0.1 + step / 100), (step, layer, "act_std", 0.5)]
        rows += [(step, None, "batch_loss", 2.3 / (1 + step)), (step, None, "test_loss", 2.4 / (1 + step))]
    rows.append((0, None, "test_accuracy", 0.1))
    frame = pd.DataFrame(rows, columns=["step", "layer", "name", "value"])
    return frame.assign(run=run, depth=depth, seed=seed, activation="tanh", init="xavier_uniform",
                        series=f"depth={depth}", curve="", shade=1.0 if depth > 3 else 0.5, status=status,
                        panel="tanh · xavier_uniform", column="xavier_uniform", column_order=2,
                        diverged_at_step=np.nan)


@pytest.fixture
def metrics() -> pd.DataFrame:
    """Depth 3 (one seed) and depth 6 (two seeds), with a theory profile for depth 6."""
    frames = [run_rows(0, 3), run_rows(1, 6, seed=0), run_rows(2, 6, seed=1)]
    theory = run_rows(1, 6).query("step == 0 and name == 'delta_rms'").assign(name="delta_rms_predicted")
    return pd.concat([*frames, theory], ignore_index=True)


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def labelled_lines(ax) -> dict[str, Line2D]:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_delta_rms_figure_draws_one_line_per_depth_and_the_theory_on_a_log_scale(metrics, ax):
    figures_init.delta_rms_at_init(metrics, ax)
    lines = labelled_lines(ax)
    assert set(lines) == {"depth=3", "depth=6", "mean-field theory"}
    assert list(lines["depth=6"].get_ydata()) == pytest.approx([0.5**k for k in range(5, -1, -1)])
    assert lines["mean-field theory"].get_color() == THEORY["color"]
    assert ax.get_yscale() == "log"
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1  # a band for the two seeds


def test_grad_norm_figure_draws_the_step0_profile_without_theory(metrics, ax):
    figures_init.grad_norm_at_init(metrics, ax)
    lines = labelled_lines(ax)
    assert set(lines) == {"depth=3", "depth=6"}
    assert list(lines["depth=3"].get_ydata()) == pytest.approx([0.3] * 3)  # step 0 only
    assert "grad_norm" in ax.get_ylabel()


def test_heatmap_covers_every_layer_and_step_and_grays_out_zeros(metrics, ax):
    one_run = metrics[metrics.run == 1].copy()
    one_run.loc[(one_run.name == "grad_norm") & (one_run.layer == 1) & (one_run.step == 10), "value"] = 0.0
    figures_training.grad_norm_heatmap(one_run, ax)
    [mesh] = [c for c in ax.collections if isinstance(c, QuadMesh)]
    values = mesh.get_array()
    assert values.shape == (6, 4)  # layers 1..6 x steps 0, 5, 10, 15
    assert values.mask[0, 2] and not values.mask[1:].any()
    assert values[5, 3] == pytest.approx(np.log10(15.3))
    assert ax.figure.axes[-1].get_ylabel() == "log10 grad_norm"


def test_ratio_figure_draws_measured_points_and_the_theory_line(ax):
    runs = pd.DataFrame({"run": [0, 1, 2], "activation": "relu", "init": "xavier_uniform", "curve": "",
                         "depth": [2, 10, 30], "shade": 1.0, "delta_rms_ratio": [0.7, 0.0, 1e-4]})
    theory = pd.DataFrame({"activation": "relu", "init": "xavier_uniform", "curve": "", "depth": [2, 30],
                           "log10_ratio": [-0.15, -4.4]})
    figures_init.delta_ratio_against_depth(figures_init.ratio_rows(runs, theory), ax)
    [measured] = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert list(measured.get_xdata()) == [2, 30]  # the ratio of 0 is no point on the line...
    [underflow] = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert list(underflow.get_xdata()) == [10]  # ...but a marker at the bottom
    theory_lines = [line for line in ax.get_lines() if list(line.get_ydata()) == [-0.15, -4.4]]
    assert len(theory_lines) == 1 and theory_lines[0].get_color() == THEORY["color"]
    legend = {text.get_text(): handle for text, handle in zip(ax.get_legend().texts, ax.get_legend().legend_handles,
                                                              strict=True)}
    assert set(legend) == {"xavier_uniform", figures_init.UNDERFLOW, "mean-field theory (black)"}
    assert legend["xavier_uniform"].get_linestyle() == measured.get_linestyle()  # the init is told by its style
    assert legend["xavier_uniform"].get_color() == measured.get_color()


def test_loss_figure_marks_a_diverged_run_at_its_step_and_draws_the_chance_level(metrics, ax):
    diverged = run_rows(3, 6, status="diverged", steps=10).assign(diverged_at_step=7.0)
    diverged.loc[(diverged.name == "batch_loss") & (diverged.step == 10), "value"] = np.nan
    rows = pd.concat([metrics, diverged]).assign(chance_loss=math.log(10))
    figures_training.loss_curves(rows, ax)
    [crosses] = [c for c in ax.collections if c.get_offsets().shape[0] and not isinstance(c, PolyCollection)]
    assert crosses.get_offsets().tolist() == [[7, pytest.approx(2.3 / 6)]]  # its step, its last finite batch loss
    [chance] = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert list(chance.get_ydata()) == [pytest.approx(2.302585, rel=1e-6)] * 2
    assert chance.get_label() == "chance: ln 10 = 2.30"
    assert ax.get_yscale() == "log"
    assert "diverged here" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_accuracy_heatmap_has_a_cell_per_swept_pair_and_names_diverged_cells(ax):
    runs = pd.DataFrame({"run": range(5), "activation": ["tanh", "tanh", "relu", "relu", "relu"],
                         "init": ["normal", "kaiming_normal", "normal", "kaiming_normal", "kaiming_normal"],
                         "depth": 10, "seed": [0, 0, 0, 0, 1], "final_test_accuracy": [0.5, 0.9, 0.1, 0.8, 0.6],
                         "status": ["completed", "completed", "diverged", "completed", "completed"],
                         "device": ["cpu", "cuda", "cpu", "cuda", "cpu"]})  # bookkeeping: no axis of its own
    constant = ["width", "init_gain", "lr", "momentum", "clip_grad_norm", "batch_size", "epochs", "dataset.name",
                "dataset.kind", "loss"]
    for column in constant:
        runs[column] = 1
    config_keys = ["depth", "width", "activation", "init", "seed", "device", *constant]
    figures_training.accuracy_heatmap(runs, ax, config_keys)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["0.50", "0.70", "0.90", "diverged"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tanh", "relu"]
    assert ax.yaxis_inverted()  # the first row on top, as in a table
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("init", "activation")


def test_saturation_figure_draws_init_dashed_and_end_solid_per_depth_on_a_unit_scale(metrics, ax):
    figures_training.saturation_profile(metrics, ax)
    drawn = [line for line in ax.get_lines() if len(line.get_xdata())]
    ends = [line for line in drawn if line.get_linewidth() > 2]
    starts = [line for line in drawn if line not in ends]
    assert len(drawn) == 4 and len(ends) == 2  # depth 3 and 6, each at init (thin) and at the end (thick)
    assert max(ends[1].get_ydata()) == pytest.approx(0.25)  # step 15: 0.1 + 0.15
    assert max(starts[1].get_ydata()) == pytest.approx(0.1)  # step 0
    assert {line.get_linestyle() for line in ends} == {"-"} and "-" not in {line.get_linestyle() for line in starts}
    assert {"at init (step 0)", "at the end"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02))


def test_act_std_figure_uses_a_log_scale(metrics, ax):
    figures_training.act_std_profile(metrics, ax)
    assert ax.get_yscale() == "log"


def test_update_ratio_figure_keeps_a_hundred_layers_legible_with_the_guide(ax):
    deep = run_rows(0, 100)
    figures_training.update_ratio_curves(deep, ax)
    layer_lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 4]
    assert len(layer_lines) == needs.MAX_LAYER_LINES
    guide = [line for line in ax.get_lines() if list(line.get_ydata()) == [1e-3, 1e-3]]
    assert len(guide) == 1 and ax.get_yscale() == "log"


def test_facet_grid_lays_out_one_panel_per_activation_and_init(metrics):
    kaiming = metrics.assign(init="kaiming_normal", column="kaiming_normal", column_order=5, run=metrics.run + 10)
    fig = facet_grid(pd.concat([kaiming, metrics]), figures_init.delta_rms_at_init)
    assert [ax.get_title() for ax in fig.axes] == ["tanh · xavier_uniform", "tanh · kaiming_normal"]
    assert fig.axes[0].get_ylabel() and not fig.axes[1].get_ylabel()  # one y label per row
    plt.close(fig)


def test_a_long_row_of_facets_wraps_into_rows_of_three(metrics):
    widths = [metrics.assign(column=f"xavier_uniform · width={w}", column_order=w, run=metrics.run + 10 * w)
              for w in (512, 16, 32, 64, 128, 256)]
    fig = facet_grid(pd.concat(widths), figures_init.delta_rms_at_init)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6 and titles[0] == "tanh · xavier_uniform · width=16"
    assert titles[-1] == "tanh · xavier_uniform · width=512"  # in column_order, not in the order of the rows
    assert fig.get_figwidth() < fig.get_figheight() * 3
    plt.close(fig)


def test_every_registered_init_has_its_own_line_style():
    assert set(INIT_STYLES) == set(INITS)
    assert len({str(style) for style in INIT_STYLES.values()}) == len(INITS)


def test_every_registered_activation_has_its_own_color():
    colors = [tuple(np.round(series_color(name, 1.0), 3)) for name in ACTIVATIONS]
    assert len(set(colors)) == len(colors)
    for a, b in itertools.combinations(colors, 2):
        assert np.abs(np.subtract(a, b)).max() > 0.1, "two activations look alike"


def test_long_panel_titles_break_after_the_activation(ax):
    set_title(ax, "tanh · normal · width=256, clip_grad_norm=none")
    assert ax.get_title() == "tanh\nnormal · width=256, clip_grad_norm=none"
    set_title(ax, "tanh · normal")
    assert ax.get_title() == "tanh · normal"
