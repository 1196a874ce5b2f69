"""The Jacobian and trainability figures (10, 11a, 11b, 12) and what feeds them, from run records written here.

Expected values are definitions and closed forms: a histogram's shares sum to the share of nonzero singular values;
ReLU's correlation depth scale below sigma_w^2 = 2 is xi_c = -1 / ln(sigma_w^2 / 2) and its edge of chaos is 2;
a cell is trainable above chance + half the way to the best cell (0.1 + 0.5 (0.9 - 0.1) = 0.5 here).
"""

import json
import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import QuadMesh
from matplotlib.patches import Rectangle, StepPatch

from analysis import report
from analysis.catalog import AT_INIT_ONLY, FIGURES, NO_GRID
from analysis.figures_jacobian import spectrum_bins, spectrum_histograms
from analysis.load import UnreadableSpectra, load
from analysis.predict import architecture, predicted_profile
from analysis.trainability import agreement, trainability_rows
from gradlab import theory
from gradlab.theory_depth import critical_sigma_w2, depth_scales

WIDTH, Q0S = 16, [0.5, 1.0, 2.0]
CONFIG = {"depth": 4, "width": WIDTH, "activation": "tanh", "init": "lecun_normal", "init_gain": 1.0, "bias_std": 0.0,
          "arch": "plain", "residual_scale": 1.0, "norm": "none", "lr": 0.1, "momentum": 0.9, "epochs": 2,
          "batch_size": 100, "seed": 0, "replicas": 1, "log_every": 5, "clip_grad_norm": None, "loss": None,
          "device": "cpu", "data_dir": "data", "skip_completed": False, "optimizer": {"name": "sgd"},
          "dataset": {"name": "digits"}, "jacobian": {"examples": 4, "every_epoch": True},
          "logger": {"mode": "disabled"}}  # fmt: skip
NEW_CONFIG_KEYS, NEW_FACTS = ("bias_std", "jacobian"), ("sigma_w2", "sigma_b2")


def metric_rows(depth: int, jacobian_steps: tuple[int, ...], replicas: int, isometry: float = 0.5) -> pd.DataFrame:
    rows = []
    for replica in range(replicas):
        for step in (0, 15, 30):
            rows += [(replica, step, layer, "delta_rms", 2.0 ** layer) for layer in range(1, depth + 1)]
            rows += [(replica, step, None, "batch_loss", 2.3 - step / 30), (replica, step, None, "test_loss", 2.3)]
        for step in jacobian_steps:
            rows += [(replica, step, None, "jac_log_sv_mean", -1.0 - step / 10 - depth),
                     (replica, step, None, "jac_log_sv_std", 0.1 * depth + replica),
                     (replica, step, None, "jac_isometry", isometry - step / 100)]
    frame = pd.DataFrame(rows, columns=["replica", "step", "layer", "name", "value"]).assign(epoch=0)
    return frame.astype({"layer": "Int64"})


def write_job(sweep: Path, number: int, *, spectra: dict[int, list[float]] | None = None,
              jacobian_steps: tuple[int, ...] = (0, 15, 30), accuracy: float = 0.5, status: str = "completed",
              old_record: bool = False, isometry: float = 0.5, **overrides: object) -> Path:
    """A job folder as src/run.py leaves it; spectra: {step: singular values} for jacobian.parquet (per replica)."""
    config = {**CONFIG, **overrides}
    job = sweep / f"{number}_job"
    (job / ".hydra").mkdir(parents=True)
    depth, gain, replicas = config["depth"], config["init_gain"], config["replicas"]
    summary = {"status": status, "steps": 30, "final_test_accuracy": accuracy, "final_test_loss": 1.0,
               "diverged_at_step": 7 if status == "diverged" else None,
               "layer_sizes": [64, *[WIDTH] * (depth - 1), 10], "loss_in_force": "cross_entropy",
               "input_q0_quantiles": Q0S, "sigma_w2": [gain**2] * depth,  # lecun_normal: fan_in Var(W) = 1
               "sigma_b2": config["bias_std"] ** 2}
    if old_record:
        config = {key: value for key, value in config.items() if key not in NEW_CONFIG_KEYS}
        summary = {key: value for key, value in summary.items() if key not in NEW_FACTS}
        jacobian_steps, spectra = (), None
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / "summary.json").write_text(json.dumps(summary))
    metric_rows(depth, jacobian_steps, replicas, isometry).to_parquet(job / "metrics.parquet")
    if spectra:
        rows = [(replica, step, 0, index, value + replica) for replica in range(replicas)
                for step, values in spectra.items() for index, value in enumerate(values)]
        table = pd.DataFrame(rows, columns=["replica", "step", "example", "index", "singular_value"])
        table.to_parquet(job / "jacobian.parquet")
    return job


def build(inputs, name: str):
    [spec] = [spec for spec in FIGURES if spec.name.startswith(name)]
    return spec.build(inputs)


def drawn_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]


def panel_text(fig) -> str:
    return " ".join(text.get_text().replace("\n", " ") for ax in fig.axes for text in ax.texts)


# --- loading -------------------------------------------------------------------------------------------------------

def test_spectra_are_read_at_step_0_only_and_each_replica_gets_its_own(tmp_path: Path):
    write_job(tmp_path, 0, replicas=2, spectra={0: [0.5, 1.0, 2.0], 30: [9.0, 9.0, 9.0]})
    loaded = load([tmp_path], progress=False)
    by_run = loaded.spectra.groupby("run").singular_value.apply(sorted).to_dict()
    assert by_run == {0: [0.5, 1.0, 2.0], 1: [1.5, 2.0, 3.0]}  # replica r's values are the job's + r here
    assert {"activation", "init", "series", "shade", "column"} <= set(loaded.spectra.columns)


def test_a_job_without_jacobian_parquet_loads_with_no_spectra(tmp_path: Path):
    write_job(tmp_path, 0, old_record=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableSpectra)
        loaded = load([tmp_path], progress=False)
    assert loaded.spectra.empty and len(loaded.runs) == 1


def test_an_unreadable_jacobian_parquet_is_named_in_a_warning_and_the_run_kept(tmp_path: Path):
    job = write_job(tmp_path, 0, spectra={0: [1.0, 2.0]})
    data = (job / "jacobian.parquet").read_bytes()
    (job / "jacobian.parquet").write_bytes(data[: len(data) // 2])
    with pytest.warns(UnreadableSpectra, match=str(job)):
        loaded = load([tmp_path], progress=False)
    assert len(loaded.runs) == 1 and loaded.spectra.empty


def test_the_recorded_sigma_b2_reaches_the_predicted_profile(tmp_path: Path):
    write_job(tmp_path, 0, bias_std=0.7)
    run = next(load([tmp_path], progress=False).runs.itertuples(index=False))
    assert run.sigma_b2 == pytest.approx(0.49)
    sizes = [64, *[WIDTH] * 3, 10]
    biased = theory.log10_delta_rms_profile(sizes, "tanh", "lecun_normal", Q0S, sigma_b2=0.49)
    assert predicted_profile(*architecture(run)) == pytest.approx(biased, abs=1e-12)
    assert predicted_profile(*architecture(run))[0] < theory.log10_delta_rms_profile(sizes, "tanh", "lecun_normal",
                                                                                     Q0S)[0] - 0.1


def test_an_old_record_has_no_bias_and_is_a_seed_of_the_unbiased_series(tmp_path: Path):
    write_job(tmp_path, 0, old_record=True, seed=0)
    write_job(tmp_path, 1, seed=1, jacobian={"examples": 0, "every_epoch": True})  # a measurement key: no split
    runs = load([tmp_path], progress=False).runs
    assert list(runs.bias_std) == [0.0, 0.0] and list(runs.sigma_b2) == [0.0, 0.0]
    assert runs.series.nunique() == 1 and sorted(runs.seed) == [0, 1]


# --- figures 10 and 11 ---------------------------------------------------------------------------------------------

@pytest.fixture
def jacobian_sweep(tmp_path: Path) -> Path:
    """tanh with lecun_normal and orthogonal init, depths 3 and 6; the depth-6 lecun run has a quarter zeros."""
    spectra = {3: {0: [0.1, 1.0, 1.0, 10.0]}, 6: {0: [0.0, 1e-3, 1.0, 1e3]}}
    for number, (init, depth) in enumerate([(i, d) for i in ("lecun_normal", "orthogonal") for d in (3, 6)]):
        write_job(tmp_path, number, init=init, depth=depth, spectra=spectra[depth])
    return tmp_path


def test_spectrum_panel_draws_one_histogram_per_depth_whose_shares_sum_to_the_nonzero_share(jacobian_sweep: Path):
    inputs, _, _ = report.analyse([jacobian_sweep], progress=False)
    lecun = inputs.spectra[inputs.spectra.init == "lecun_normal"]
    fig, ax = plt.subplots()
    spectrum_histograms(lecun, ax)
    patches = [patch for patch in ax.patches if isinstance(patch, StepPatch)]
    assert [patch.get_label() for patch in patches] == ["depth=3", "depth=6"]
    for patch, nonzero in zip(patches, (1.0, 0.75), strict=True):
        shares, edges = patch.get_data().values, patch.get_data().edges
        assert (shares * np.diff(np.log10(edges))).sum() == pytest.approx(nonzero)  # per decade x decades
    lines = [" ".join(area.get_text() for area in line.get_children())
             for box in ax.artists for line in box.get_child().get_children()]
    assert lines == ["in [0.5, 2]: 50% 25%", "exactly 0: 0% 25%"]  # depth 3: 1 and 1 of 4; depth 6: 1, and 0
    assert ax.get_xscale() == "log"
    plt.close(fig)


def test_spectrum_bins_put_three_bins_across_the_band_and_span_at_most_60_decades():
    edges = spectrum_bins(np.array([1e-100, 1e-60, 1e-50, 1e-40, 1e-10, 0.3, 1.0, 3.0]))
    assert np.log10(edges[-1] / edges[0]) == pytest.approx(60, abs=0.2)
    assert 1e-60 < edges[0] < 1e-50 and edges[-1] >= 3.0  # the window holding the band and the most values
    band = edges[(edges >= 0.5 - 1e-12) & (edges <= 2 + 1e-12)]
    assert band == pytest.approx([0.5, 0.5 * 4 ** (1 / 3), 0.5 * 4 ** (2 / 3), 2.0])  # three bins, s = 1 inside one
    narrow = spectrum_bins(np.array([0.9, 1.1]))
    assert narrow[0] <= 0.1 and narrow[-1] >= 10  # at least 0.1 .. 10, the band well inside


def test_spectrum_figure_has_a_panel_per_activation_and_init(jacobian_sweep: Path):
    inputs, _, _ = report.analyse([jacobian_sweep], progress=False)
    fig = build(inputs, "10_")
    panels = drawn_axes(fig)
    assert [ax.get_title() for ax in panels] == ["tanh · lecun_normal", "tanh · orthogonal"]
    assert [sum(isinstance(p, StepPatch) for p in ax.patches) for ax in panels] == [2, 2]
    assert len({ax.get_xlim() for ax in panels}) == 1 and len({ax.get_ylim() for ax in panels}) == 1
    edges = [patch.get_data().edges for ax in panels for patch in ax.patches if isinstance(patch, StepPatch)]
    assert all(np.array_equal(edges[0], other) for other in edges)  # one set of bins for every panel
    plt.close(fig)


def test_jacobian_training_figures_draw_a_line_per_depth_against_step(jacobian_sweep: Path):
    inputs, _, _ = report.analyse([jacobian_sweep], progress=False)
    fig = build(inputs, "11a_")
    ax = drawn_axes(fig)[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["depth=6"].get_xdata()) == [0, 15, 30]
    assert list(lines["depth=6"].get_ydata()) == pytest.approx([-7.0, -8.5, -10.0])
    assert list(lines["ln s = 0: isometric on average"].get_ydata()) == [0.0, 0.0]
    assert len({tuple(ax.get_ylim()) for ax in drawn_axes(fig)}) == 1  # one scale: the panels compare inits
    plt.close(fig)
    fig = build(inputs, "11b_")
    assert drawn_axes(fig)[0].get_ylim() == pytest.approx((-0.02, 1.02))
    plt.close(fig)


def test_a_diverged_run_is_marked_at_the_step_it_diverged_and_its_last_measured_jacobian(tmp_path: Path):
    write_job(tmp_path, 0, status="diverged", jacobian_steps=(0,))  # diverged at step 7 (its summary), J at 0 only
    write_job(tmp_path, 1, depth=6)
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    fig = build(inputs, "11a_")
    crosses = [c for c in drawn_axes(fig)[0].collections if c.get_offsets().shape[0]]
    assert [c.get_offsets().tolist() for c in crosses] == [[[7, -5.0]]]  # step 7, not 0; -1 - 0/10 - depth 4
    plt.close(fig)


def test_jacobian_figures_say_why_they_are_empty(tmp_path: Path):
    write_job(tmp_path, 0, jacobian_steps=(0,))
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    for name in ("11a_", "11b_"):
        fig = build(inputs, name)
        assert AT_INIT_ONLY in panel_text(fig)
        plt.close(fig)
    fig = build(inputs, "10_")  # no jacobian.parquet
    assert "no Jacobian spectra" in panel_text(fig)
    plt.close(fig)


# --- figure 12: the trainability map -------------------------------------------------------------------------------

def relu_grid(sweep: Path, flip: tuple[float, int] | None = None) -> None:
    """ReLU at sigma_w^2 = 1, 1.5, 1.8, 2.5 (lecun_normal, init_gain sqrt) and depths 2, 4, 12: accuracy 0.9 where
    depth < 6 xi_c = -6 / ln(sigma_w^2 / 2), else 0.1; the cell `flip` the other way."""
    number = 0
    for sigma_w2 in (1.0, 1.5, 1.8, 2.5):
        for depth in (2, 4, 12):
            trainable = sigma_w2 < 2 and depth < -6 / math.log(sigma_w2 / 2)
            if flip == (sigma_w2, depth):
                trainable = not trainable
            write_job(sweep, number, activation="relu", init_gain=math.sqrt(sigma_w2), depth=depth,
                      accuracy=0.9 if trainable else 0.1)
            number += 1


def test_relu_map_has_the_closed_form_depth_scale_and_its_edge_of_chaos_at_two(tmp_path: Path):
    relu_grid(tmp_path)
    loaded = load([tmp_path], progress=False)
    rows = trainability_rows(loaded.runs, loaded.config_keys)
    curve = rows[rows.source == "theory"]
    ordered = curve[curve.sigma_w2 < 2 * (1 - 1e-3)]
    assert ordered.depth.to_numpy() == pytest.approx(-6 / np.log(ordered.sigma_w2.to_numpy() / 2), rel=1e-9)
    assert curve[curve.sigma_w2 > 2].depth.isna().all()  # no fixed length above 2: no xi_c
    assert rows[rows.source == "critical"].sigma_w2.tolist() == [pytest.approx(2.0, rel=1e-9)]
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    fig = build(inputs, "12_")
    ax = drawn_axes(fig)[0]
    [mesh] = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().shape == (3, 4)  # depths x sigma_w^2
    [edge] = [line for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
    assert edge.get_xdata()[0] == pytest.approx(2.0, rel=1e-9)
    plt.close(fig)


def test_tanh_map_draws_6_xi_c_of_the_depth_scales_and_the_edge_of_chaos(tmp_path: Path):
    number = 0
    for sigma_w2 in (1.0, 2.0, 3.0):
        for depth in (5, 50):
            write_job(tmp_path, number, init_gain=math.sqrt(sigma_w2), depth=depth, bias_std=math.sqrt(0.05))
            number += 1
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    fig = build(inputs, "12_")
    ax = drawn_axes(fig)[0]
    [curve] = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    x, y = curve.get_xdata(), curve.get_ydata()
    finite = y < 100  # the rest is the divergence at the edge, clipped off the top
    assert y[finite] == pytest.approx([6 * depth_scales("tanh", s, 0.05).xi_c for s in x[finite]], rel=1e-9)
    [edge] = [line for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
    assert edge.get_xdata()[0] == pytest.approx(critical_sigma_w2("tanh", 0.05), rel=1e-9)
    assert 1.75 < edge.get_xdata()[0] < 1.77
    assert ax.get_title() == r"tanh · $\sigma_b^2$=0.05"
    plt.close(fig)


def test_cells_off_the_predicted_side_are_outlined_and_counted(tmp_path: Path):
    relu_grid(tmp_path, flip=(1.5, 4))
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    [row] = agreement(inputs.trainability).to_dict("records")
    assert (row["chance"], row["threshold"]) == (pytest.approx(0.1), pytest.approx(0.5))  # 0.1 + (0.9 - 0.1) / 2
    assert (row["cells"], row["compared"]) == (12, 9)  # sigma_w^2 = 2.5 has no xi_c
    assert row["on the predicted side"] == pytest.approx(8 / 9)
    fig = build(inputs, "12_")
    outlines = [patch for patch in drawn_axes(fig)[0].patches if isinstance(patch, Rectangle) and not patch.fill]
    assert len(outlines) == 1
    plt.close(fig)


def test_no_map_without_two_depths_and_two_sigma_w2_of_plain_networks(tmp_path: Path):
    for number, depth in enumerate((2, 4, 12)):
        write_job(tmp_path, number, depth=depth)  # one sigma_w^2
    for number, gain in enumerate((1.0, 1.5), start=3):
        write_job(tmp_path, number, depth=6, init_gain=gain, norm="layernorm")  # normalized: no theory
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    assert inputs.trainability.empty
    fig = build(inputs, "12_")
    assert NO_GRID.split(":")[0] in panel_text(fig)
    plt.close(fig)


# --- the report ----------------------------------------------------------------------------------------------------

def test_the_report_builds_for_old_records_without_any_of_the_new_data(tmp_path: Path):
    for number, depth in enumerate((2, 6)):
        write_job(tmp_path, number, old_record=True, depth=depth)
    index = report.build([tmp_path], progress=False)
    page = index.read_text()
    for name in ("10_jacobian_spectra", "11a_jacobian_log_sv_mean", "11b_jacobian_isometry", "12_trainability"):
        assert (index.parent / "figures" / f"{name}.png").exists() and f'src="figures/{name}.png"' in page
    assert "Trainability against the theory" not in page


def test_the_report_page_gives_the_share_of_cells_on_the_predicted_side(tmp_path: Path):
    relu_grid(tmp_path, flip=(1.5, 4))
    page = report.build([tmp_path], progress=False).read_text()
    assert "Trainability against the theory" in page and "<td>0.889</td>" in page
    pairs = page.split('<div class="pair">')[1:]
    assert any('id="11a_jacobian_log_sv_mean"' in pair and 'id="11b_jacobian_isometry"' in pair for pair in pairs)

