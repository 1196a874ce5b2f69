"""The report on residual and normalized networks, from run records written here (no training): the residual
theory where it applies, no theory line for a normalized network, and old records read as plain SGD networks.

Expected values are closed forms for ReLU with kaiming init (sigma_w^2 = 2, E[relu^2] = q/2, E[relu'^2] = 1/2):
each residual block multiplies ||dL/dh||^2 by 1 + alpha^2, the readout passes it back with gain 1, and
delta_rms(l) = alpha ||dL/dh^l|| for l = 2..depth-1, delta_rms(1) = ||dL/dh^1||; a plain network keeps it flat.
"""

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import figures_init, report
from analysis.catalog import FIGURES
from analysis.layout import set_title
from analysis.load import load
from analysis.predict import NO_THEORY_FOR_NORMS, architecture, predicted_profile
from analysis.series import label_series
from analysis.style import THEORY

ALPHA, WIDTH, Q0S = 0.5, 32, [0.4, 1.0, 2.5]
CONFIG = {"depth": 6, "width": WIDTH, "activation": "relu", "init": "kaiming_normal", "init_gain": 1.0, "lr": 0.1,
          "momentum": 0.9, "epochs": 1, "batch_size": 100, "seed": 0, "replicas": 1, "log_every": 5,
          "clip_grad_norm": None, "loss": None, "device": "cpu", "data_dir": "data", "skip_completed": False,
          "arch": "plain", "norm": "none", "residual_scale": 1.0,
          "optimizer": {"name": "sgd"}, "dataset": {"name": "digits"}, "logger": {"mode": "disabled"}}  # fmt: skip
OLD_KEYS = ("arch", "norm", "residual_scale", "optimizer")  # what a record made before residual networks lacks


def residual_log10_profile(depth: int, alpha: float) -> list[float]:
    """log10 delta_rms(l) / delta_rms(depth) of a residual ReLU network with kaiming init, in closed form."""
    gain = math.log10(1 + alpha**2) / 2
    return [(depth - 2) * gain, *[math.log10(alpha) + (depth - 1 - l) * gain for l in range(2, depth)], 0.0]


def metric_rows(depth: int, arch: str) -> pd.DataFrame:
    """What a run records at steps 0 and 5: per-layer delta_rms and grad_norm, the signal metrics, the losses."""
    rows = []
    for step in (0, 5):
        for layer in range(1, depth + 1):
            rows += [(step, layer, "delta_rms", 1.3 ** (depth - layer)), (step, layer, "grad_norm", 0.5)]
            if layer < depth:
                rows += [(step, layer, "avg_sq_mean", 0.1), (step, layer, "avg_var", 1.5**layer)]
            if arch == "residual" and 2 <= layer < depth:
                rows.append((step, layer, "branch_avg_var", 1.5 ** (layer - 1)))
        rows += [(step, None, "batch_loss", 2.0 - step / 10), (step, None, "test_loss", 2.1 - step / 10)]
    frame = pd.DataFrame(rows, columns=["step", "layer", "name", "value"]).assign(epoch=0, replica=0)
    return frame.astype({"layer": "Int64"})


def write_job(sweep: Path, number: int, old_record: bool = False, **overrides: object) -> None:
    """A job folder as src/run.py leaves it: .hydra/config.yaml, summary.json with its facts, metrics.parquet."""
    config = {**CONFIG, **overrides}
    if old_record:
        config = {key: value for key, value in config.items() if key not in OLD_KEYS}
    job = sweep / f"{number}_job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    depth = config["depth"]
    summary = {"status": "completed", "steps": 5, "final_test_accuracy": 0.5, "final_test_loss": 1.6,
               "layer_sizes": [64, *[WIDTH] * (depth - 1), 10], "loss_in_force": "cross_entropy",
               "input_q0_quantiles": Q0S}
    (job / "summary.json").write_text(json.dumps(summary))
    metric_rows(depth, config.get("arch", "plain")).to_parquet(job / "metrics.parquet")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Residual ReLU networks (alpha 0.5) of depth 6 and 12, without a norm and with layernorm."""
    folder = tmp_path / "sweep"
    residual = {"arch": "residual", "residual_scale": ALPHA}
    for number, (depth, norm) in enumerate([(6, "none"), (12, "none"), (6, "layernorm"), (12, "layernorm")]):
        write_job(folder, number, depth=depth, norm=norm, **residual)
    return folder


def test_residual_runs_get_the_residual_theory_anchored_at_their_last_layer(sweep: Path):
    inputs, _, _ = report.analyse([sweep], progress=False)
    predicted = inputs.metrics[inputs.metrics.name == "delta_rms_predicted"]
    runs = inputs.runs.set_index("run")
    assert len(predicted.run.unique()) == 2  # depth 6 and 12 without a norm; none for the normalized runs
    assert set(runs.loc[predicted.run.unique()].norm) == {"none"}
    for run, rows in predicted.groupby("run"):
        depth = runs.depth[run]
        last = 1.0  # the measured delta_rms at the last layer: 1.3^0
        expected = last * 10 ** np.array(residual_log10_profile(depth, ALPHA))
        assert rows.sort_values("layer").value.to_numpy() == pytest.approx(expected, rel=1e-9)


def test_findings_predict_a_residual_ratio_and_leave_normalized_networks_blank(sweep: Path):
    _, table, _ = report.analyse([sweep], progress=False)
    rows = table.set_index("norm")
    assert rows.predicted["none"] == pytest.approx(math.sqrt(1 + ALPHA**2), rel=1e-9)  # per block, toward the input
    assert rows["delta_rms theory"]["none"] == "stable"  # 1.118 < 10^0.1
    assert math.isnan(rows.predicted["layernorm"]) and rows["delta_rms theory"]["layernorm"] == NO_THEORY_FOR_NORMS
    assert rows.measured["layernorm"] == pytest.approx(1.3, rel=1e-9)  # still measured


def test_ratio_against_depth_theory_is_the_residual_one_and_absent_for_normalized_networks(sweep: Path):
    inputs, _, _ = report.analyse([sweep], progress=False)
    theory = inputs.ratios[inputs.ratios.source == "theory"]
    assert set(theory.curve) == {"norm=none"}
    expected = [(depth - 2) * math.log10(1 + ALPHA**2) / 2 for depth in theory.depth]  # delta(1)^2 = (1+a^2)^(d-2)
    assert theory.log10_ratio.to_numpy() == pytest.approx(expected, abs=1e-12)


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_figure_1_draws_the_theory_over_residual_panels_and_none_over_normalized_ones(sweep: Path):
    inputs, _, _ = report.analyse([sweep], progress=False)
    [spec] = [spec for spec in FIGURES if spec.name == "1_delta_rms_at_init"]
    fig = spec.build(inputs)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.axison}
    assert set(panels) == {"relu · kaiming_normal · norm=none", "relu · kaiming_normal · norm=layernorm"}
    theory_lines = {title: [line for line in ax.get_lines() if line.get_color() == THEORY["color"]]
                    for title, ax in panels.items()}
    assert theory_lines["relu · kaiming_normal · norm=layernorm"] == []
    assert sorted(len(line.get_xdata()) for line in theory_lines["relu · kaiming_normal · norm=none"]) == [6, 12]
    [legend] = [ax.get_legend() for ax in fig.axes if ax.get_legend()]  # one, beside the row
    assert NO_THEORY_FOR_NORMS in [text.get_text() for text in legend.get_texts()]
    plt.close(fig)
    rows = inputs.metrics[inputs.metrics.name.isin(["delta_rms", "delta_rms_predicted"])]
    for norm, says_so in (("layernorm", True), ("none", False)):  # each panel, drawn alone
        fig, ax = plt.subplots()
        figures_init.delta_rms_at_init(rows[rows.norm == norm], ax)
        assert (NO_THEORY_FOR_NORMS in legend_texts(ax)) == says_so
        plt.close(fig)


def test_report_page_says_there_is_no_theory_for_normalized_networks(sweep: Path):
    index = report.build([sweep], progress=False)
    page = index.read_text()
    assert NO_THEORY_FOR_NORMS in page
    for name in ("9a_signal_sq_mean", "9b_signal_var"):
        assert f'src="figures/{name}.png"' in page and (index.parent / "figures" / f"{name}.png").exists()


def test_a_record_from_before_the_new_keys_is_a_seed_of_the_plain_sgd_series(tmp_path: Path):
    sweep = tmp_path / "mixed"
    write_job(sweep, 0, old_record=True, seed=0)
    write_job(sweep, 1, seed=1)  # arch=plain, norm=none, residual_scale=1.0, optimizer.name=sgd, said outright
    loaded = load([sweep], progress=False)
    runs = loaded.runs
    assert list(runs.arch) == ["plain", "plain"] and list(runs["optimizer.name"]) == ["sgd", "sgd"]
    assert runs.series.nunique() == 1 and sorted(runs.seed) == [0, 1]
    old = next(runs.itertuples(index=False))
    assert predicted_profile(*architecture(old)) == pytest.approx([0.0] * 6, abs=1e-12)  # plain ReLU + kaiming: flat


def test_a_run_table_without_the_new_columns_is_read_as_plain():
    """A run table built before the columns existed (no arch, norm or residual_scale) gets the plain theory."""
    run = pd.Series({"activation": "relu", "init": "kaiming_normal", "init_gain": 1.0,
                     "layer_sizes": (64, WIDTH, WIDTH, 10), "input_q0_quantiles": tuple(Q0S)})
    network = architecture(run)
    assert (network.arch, network.residual_scale, network.norm) == ("plain", 1.0, "none")
    assert predicted_profile(*network) == pytest.approx([0.0] * 3, abs=1e-12)


def test_facet_titles_name_arch_and_residual_scale_readably():
    base = {key: value for key, value in CONFIG.items() if not isinstance(value, dict)}
    rows = [{**base, "arch": arch, "residual_scale": scale, "seed": seed}
            for arch, scale in (("plain", 1.0), ("residual", 0.141)) for seed in (0, 1)]
    runs = label_series(pd.DataFrame(rows).assign(run=range(4)), list(base))
    assert sorted(runs.panel.unique()) == ["relu · kaiming_normal · arch=plain, residual_scale=1",
                                           "relu · kaiming_normal · arch=residual, residual_scale=0.141"]
    fig, ax = plt.subplots()
    set_title(ax, "relu · kaiming_normal · arch=residual, norm=layernorm, optimizer.name=adam, residual_scale=0.141")
    lines = ax.get_title().split("\n")
    assert lines[0] == "relu · kaiming_normal" and len(lines) == 3 and max(map(len, lines)) <= 44  # not 4 lines
    plt.close(fig)
