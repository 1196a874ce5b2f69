"""The benchmark script runs end to end at a tiny size and writes its table (not a timed test)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli_env


def test_benchmark_script_runs_at_tiny_size_and_writes_its_table(tmp_path: Path):
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--tiny", "--repeats", "2", "--min-seconds", "0.001",
         "--job-repeats", "0", "--out", str(out)],
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    measures = [row["measure"] for row in rows]
    assert measures == [
        "fwd+bwd manual / autograd, small",
        "fwd+bwd manual / autograd, large",
        "measurement overhead, log_every=1",
        "measurement overhead, log_every=5 (default)",
        "measurement overhead, log_every=1, large",
        "large step / its matmuls alone",
        "replicas=8 / replicas=1, training steps",
    ]
    assert all(float(row["value"]) > -1 and float(row["numerator_ms"]) > 0 for row in rows)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["measure"] for r in saved["results"]] == measures
    for measure in measures:
        assert measure in result.stdout
