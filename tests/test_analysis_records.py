"""Reading many runs at once keeps the analysis exact: configs read by the fast path equal PyYAML's, the reduced
rows (profiles at their last complete step, the heatmap's seed means) equal what the figures computed from every
row, and a record that fails mid-scan drops its job alone, the other runs keeping their own rows."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from analysis.config_file import block_mapping, read_config_text
from analysis.figures_training import last_step_rows
from analysis.load import SkippedJob, load
from analysis.records import spectrum_values

CONFIG = {"depth": 3, "width": 8, "activation": "tanh", "init": "xavier_uniform", "init_gain": 1.0, "lr": 0.1,
          "seed": 0, "replicas": 1, "clip_grad_norm": None, "loss": None, "device": "cpu", "data_dir": "data",
          "skip_completed": False, "arch": "plain", "norm": "none", "residual_scale": 1.0,
          "optimizer": {"name": "sgd", "eps": 1.0e-08}, "dataset": {"name": "digits", "test_fraction": 0.2},
          "logger": {"mode": "disabled", "entity": None}}  # fmt: skip
PROFILE = ["saturation", "act_std", "avg_sq_mean", "avg_var"]


@pytest.mark.parametrize("text", [
    yaml.safe_dump(CONFIG, sort_keys=False), "", "a: 1", "a:\n  b: 2\n  c:\nd: x", "a: yes", "yes: 1", "a: [1, 2]",
    "a: 'q'", "a: 1 # note", "a:\n- 1\n- 2", "a:\n  b: 1\n c: 2", "a: 1\na: 2", "a: .inf", "a: 2026-01-01", "a: -",
    "a: b/c", "  a: 1", "a: 1.0e-08", "a: ~", "a:\n\n  b: 3\n", "a:\n    b:\n      c: 1\n    d: 2\ne: null"])
def test_a_config_reads_as_pyyaml_reads_it(text: str):
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            read_config_text(text)
        return
    assert read_config_text(text) == expected


def test_a_hydra_config_takes_the_fast_path():
    assert block_mapping(yaml.safe_dump(CONFIG, sort_keys=False)) == CONFIG


def metric_rows(depth: int, seed: int, diverge_at: int | None) -> pd.DataFrame:
    """Steps 0, 5, 10, 15 of per-layer metrics; a diverging run's profile goes non-finite in one layer from
    diverge_at on."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in (0, 5, 10, 15):
        for layer in range(1, depth + 1):
            for name in ["grad_norm", "delta_rms", "update_ratio", "weight_norm", *PROFILE]:
                value = float(rng.uniform(0.1, 2.0))
                if diverge_at is not None and step >= diverge_at and name in PROFILE and layer == 2:
                    value = np.inf
                rows.append((0, step, 0, layer, name, value))
        rows += [(0, step, 0, None, "batch_loss", 2.3 - step / 10), (0, step, 0, None, "test_loss", 2.3)]
    frame = pd.DataFrame(rows, columns=["replica", "step", "epoch", "layer", "name", "value"])
    return frame.astype({"layer": "Int64"})


def write_job(sweep: Path, number: int, depth: int, seed: int, diverge_at: int | None = None) -> Path:
    job = sweep / f"{number}_depth={depth},seed={seed}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "depth": depth, "seed": seed}))
    status = "diverged" if diverge_at is not None else "completed"
    summary = {"status": status, "steps": 15, "final_test_accuracy": 0.5, "layer_sizes": [64, *[8] * (depth - 1), 10],
               "input_q0_quantiles": [0.5, 1.0]}
    (job / "summary.json").write_text(json.dumps(summary))
    metric_rows(depth, seed, diverge_at).to_parquet(job / "metrics.parquet")
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Depth 3 and 5, three seeds each; seed 1 of depth 5 goes non-finite at step 10."""
    for number, (depth, seed) in enumerate([(3, 0), (3, 1), (3, 2), (5, 0), (5, 1), (5, 2)]):
        write_job(tmp_path, number, depth, seed, diverge_at=10 if (depth, seed) == (5, 1) else None)
    return tmp_path


def every_row(sweep: Path) -> pd.DataFrame:
    """Every recorded row of every job, with its run as load numbers them (jobs in order)."""
    jobs = sorted(sweep.iterdir(), key=lambda job: int(job.name.split("_")[0]))
    return pd.concat([pd.read_parquet(job / "metrics.parquet").assign(run=run) for run, job in enumerate(jobs)],
                     ignore_index=True)


def test_profiles_end_at_the_last_step_where_every_layer_is_finite(sweep: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = load([sweep], progress=False).metrics
    recorded = every_row(sweep)
    for name in PROFILE:
        expected = last_step_rows(recorded[recorded.name == name])
        got = last_step_rows(metrics[metrics.name == name])
        assert sorted(zip(got.run, got.step, got.layer, got.value, strict=True)) == sorted(
            zip(expected.run, expected.step, expected.layer.astype(float), expected.value, strict=True))
    diverged = metrics[(metrics.run == 4) & (metrics.name == "act_std")]
    assert set(diverged.step) == {0, 5}  # steps 10 and 15 hold an infinite layer


def test_heatmap_cells_are_the_seed_mean_of_log10_grad_norm_of_the_deepest_runs(sweep: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heatmap = load([sweep], progress=False).heatmap
    recorded = every_row(sweep)
    deepest = recorded[(recorded.name == "grad_norm") & recorded.run.isin([3, 4, 5])]
    expected = np.log10(deepest.value).groupby([deepest.layer.astype(float), deepest.step]).mean()
    got = np.log10(heatmap.set_index(["layer", "step"]).value)
    assert got.sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy(), rel=1e-12)
    assert set(heatmap.depth) == {5} and heatmap.panel.nunique() == 1


def test_a_record_that_fails_mid_scan_drops_its_job_alone(sweep: Path):
    broken = next(sweep.glob("1_*"))
    path = broken / "metrics.parquet"
    data = bytearray(path.read_bytes())
    name_column = pq.read_metadata(path).row_group(0).column(4)
    data[name_column.data_page_offset + 5: name_column.data_page_offset + 200] = b"\xff" * 195  # footer intact
    path.write_bytes(bytes(data))
    with pytest.warns(SkippedJob, match=str(broken)):
        loaded = load([sweep], progress=False)
    assert len(loaded.runs) == 5 and broken.name not in " ".join(loaded.runs.job)
    for run in loaded.runs.itertuples(index=False):
        own = pd.read_parquet(Path(run.job_dir) / "metrics.parquet").query("step == 0 and name == 'delta_rms'")
        measured = loaded.metrics.query(f"run == {run.run} and step == 0 and name == 'delta_rms'")
        assert sorted(measured.value) == sorted(own.value)  # each run keeps its own rows after the gap


def test_a_singular_value_below_float64_stays_apart_from_an_exact_zero():
    """ln s = -800 is recorded with s = e^-800 = 0 in float64: figure 10 reads it as the smallest positive value,
    below its axis, not as an exact zero (ln s = -inf); records older than ln s keep s as it is."""
    rows = pa.table({"singular_value": [0.5, 0.0, 0.0, 0.0], "log_singular_value": [math.log(0.5), -800.0, -math.inf,
                                                                                  None]})
    values = spectrum_values(rows)
    assert values[0] == 0.5 and 0 < values[1] < 1e-300 and values[2] == 0 and values[3] == 0
