"""The report-at-scale benchmark (benchmarks/report_scale.py) builds its runs as the report must read them: each copy
a new seed of its base job's configuration, never a new configuration, and times the report (not a timed test)."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from benchmarks import report_scale

from analysis.load import load
from conftest import REPO, cli_env


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return report_scale.train_base(tmp_path_factory.mktemp("scale") / "base", report_scale.TINY_SWEEP)


def test_copies_are_new_seeds_of_the_base_configurations(base: Path, tmp_path: Path):
    copies = report_scale.copy_sweep(base, tmp_path / "copies", 20, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs, original = load([copies], progress=False).runs, load([base], progress=False).runs
    facets_and_series = ["activation", "init", "series"]  # a configuration: its panel's facets and its line
    assert len(runs) == 20 and runs.job.is_unique
    assert set(runs[facets_and_series].itertuples(index=False)) == set(original[facets_and_series].itertuples(
        index=False)) and len(original) == 4
    assert all(group.seed.is_unique and len(group) == 5 for _, group in runs.groupby(facets_and_series))
    for job_dir in map(Path, runs.job_dir):
        config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
        summary = json.loads((job_dir / "summary.json").read_text())
        assert summary["seed"] == config["seed"] and job_dir.name.endswith(f"seed={config['seed']}")
        assert summary["job_name"] == job_dir.name.split("_", 1)[1]
        assert f"seed={config['seed']}" in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())


def test_the_cli_times_the_report_over_the_copies(base: Path, tmp_path: Path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "report_scale.py"), "--base", str(base),
                             "--runs", "8", "--workdir", str(tmp_path)],
                            env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "report over 8 runs:" in result.stdout and " MB peak" in result.stdout
    assert (tmp_path / "copies_8" / "report" / "index.html").exists()


def test_measure_returns_wall_time_and_peak_memory(base: Path, tmp_path: Path):
    result = report_scale.measure(6, base=base, workdir=tmp_path, quiet=True)
    assert result["runs"] == 6 and result["wall_s"] > 0 and result["peak_mb"] > 100  # python, torch and pandas
