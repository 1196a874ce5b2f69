"""Figure 9, the signal propagation plots, from small tidy frames built here: lines per panel, styles, scales."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from analysis import figures_signal
from analysis.catalog import FIGURES, Inputs

STEPS = (0, 5, 10)


def signal_rows(run: int, depth: int, arch: str = "plain", activation: str = "relu",
                init: str = "kaiming_normal") -> pd.DataFrame:
    """A run's signal metrics: every hidden layer at each step; residual branches from layer 2, as recorded."""
    rows = []
    for step in STEPS:
        for layer in range(1, depth):
            rows += [(step, layer, "avg_sq_mean", 0.1 * layer * (1 + step)), (step, layer, "avg_var", 2.0**layer)]
            if arch == "residual" and layer >= 2:
                rows.append((step, layer, "branch_avg_var", 2.0 ** (layer - 1)))
        rows.append((step, depth, "delta_rms", 1.0))  # other metrics in the frame are left alone
    frame = pd.DataFrame(rows, columns=["step", "layer", "name", "value"])
    return frame.assign(run=run, time=pd.array([None] * len(frame), dtype="Int64"), net="mlp", depth=depth, seed=0,
                        activation=activation, init=init, series=f"depth={depth}",
                        line=f"depth={depth}", curve="", shade=depth / 10, panel=f"{activation} · {init}",
                        column=init, column_order=5, status="completed")


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def drawn(ax) -> list:
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def is_dashed(line) -> bool:
    return line.get_linestyle() not in ("-", "solid")


def has_circles(line) -> bool:
    return line.get_marker() not in (None, "None", "", " ")


def test_squared_mean_panel_draws_each_depth_thin_dashed_at_init_and_thick_solid_at_the_end_on_a_log_scale(ax):
    figures_signal.sq_mean_profile(pd.concat([signal_rows(0, 3), signal_rows(1, 6)]), ax)
    lines = drawn(ax)
    thick = [line for line in lines if line.get_linewidth() == figures_signal.END_WIDTH]
    thin = [line for line in lines if line not in thick]
    assert len(lines) == 4 and len(thick) == 2  # depth 3 and 6, each at init (thin) and at step 10 (thick)
    assert [line.get_label() for line in thick] == ["depth=3", "depth=6"]
    assert list(thick[1].get_xdata()) == [1, 2, 3, 4, 5]  # the hidden layers of depth 6
    assert list(thick[1].get_ydata()) == pytest.approx([0.1 * layer * 11 for layer in range(1, 6)])  # step 10
    assert list(thin[1].get_ydata()) == pytest.approx([0.1 * layer for layer in range(1, 6)])  # step 0
    assert all(is_dashed(line) for line in thin) and not any(is_dashed(line) for line in thick)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert {"at init (step 0)", "at the end"} <= set(legend)
    assert ax.get_yscale() == "log"


def test_variance_panel_marks_the_residual_branches_with_circles_beside_the_stream(ax):
    figures_signal.var_profile(pd.concat([signal_rows(0, 4, "residual"), signal_rows(1, 8, "residual")]), ax)
    lines = drawn(ax)
    branches = [line for line in lines if has_circles(line)]
    assert len(lines) == 8 and len(branches) == 4  # 2 depths x (stream, branch) x (init, end)
    assert {tuple(line.get_xdata()) for line in branches} == {(2, 3), (2, 3, 4, 5, 6, 7)}  # blocks 2..depth-1
    assert sum(is_dashed(line) for line in branches) == 2  # each branch at init, dashed like its stream
    assert "residual branch alpha z" in [text.get_text() for text in ax.get_legend().get_texts()]
    assert ax.get_yscale() == "log"


def test_variance_panel_of_plain_networks_has_no_branch_lines(ax):
    figures_signal.var_profile(signal_rows(0, 5), ax)
    assert len(drawn(ax)) == 2 and not any(has_circles(line) for line in drawn(ax))
    assert "residual branch alpha z" not in [text.get_text() for text in ax.get_legend().get_texts()]


def test_a_panel_without_signal_measurements_says_so(ax):
    figures_signal.var_profile(signal_rows(0, 5).query("name == 'delta_rms'"), ax)
    assert [text.get_text() for text in ax.texts] == [figures_signal.NO_SIGNAL]


def build(name: str, metrics: pd.DataFrame):
    [spec] = [spec for spec in FIGURES if spec.name == name]
    return spec.build(Inputs(runs=pd.DataFrame(), metrics=metrics, ratios=pd.DataFrame(), config_keys=[]))


@pytest.mark.parametrize("name", ["9a_signal_sq_mean", "9b_signal_var"])
def test_signal_figures_are_faceted_by_activation_and_init_like_figure_1(name):
    configs = [(4, "relu", "kaiming_normal"), (8, "relu", "kaiming_normal"), (4, "tanh", "xavier_uniform")]
    frames = [signal_rows(run, depth, "residual", activation, init)
              for run, (depth, activation, init) in enumerate(configs)]
    fig = build(name, pd.concat(frames, ignore_index=True))
    panels = [ax for ax in fig.axes if ax.axison]
    assert sorted(ax.get_title() for ax in panels) == ["relu · kaiming_normal", "tanh · xavier_uniform"]
    per_panel = {ax.get_title(): len(drawn(ax)) for ax in panels}
    lines_per_run = 2 if name == "9a_signal_sq_mean" else 4  # init and end; 9b adds the branch's
    assert per_panel == {"relu · kaiming_normal": 2 * lines_per_run, "tanh · xavier_uniform": lines_per_run}
    plt.close(fig)


@pytest.mark.parametrize("name", ["9a_signal_sq_mean", "9b_signal_var"])
def test_records_without_signal_measurements_make_a_figure_saying_so(name):
    old = signal_rows(0, 5).query("name == 'delta_rms'")  # recorded before avg_sq_mean and avg_var existed
    fig = build(name, old)
    assert [text.get_text() for ax in fig.axes for text in ax.texts] == [figures_signal.NO_SIGNAL]
    plt.close(fig)
