"""The benchmark script runs end to end at a tiny size and writes its table (not a timed test): the in-process
cases, and the whole processes of goals 1 and 2 (start-up, W&B's cost), 3 (replicas against a sweep) and 4 (the
report over 20 copied runs), and the demo sweep beside a busy process, once each."""

import csv
import json
import re
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
        "BPTT manual / autograd, vanilla, small",
        "BPTT manual / autograd, lstm, small",
        "BPTT manual / autograd, vanilla, large",
        "BPTT manual / autograd, lstm, large",
        "BPTT manual / torch's fused nn.RNN, small",
        "BPTT manual / torch's fused nn.LSTM, small",
        "BPTT manual / torch's fused nn.RNN, large",
        "BPTT manual / torch's fused nn.LSTM, large",
        "RNN per-step measurement overhead, T=200, log_every=5",
        "replicas=8 / replicas=1, training steps",
        "start-up: default run (W&B offline) / import torch",
        "W&B offline overhead, default job's wall_seconds",
        "W&B offline overhead, default job, whole process",
        "W&B offline overhead, demo sweep, whole process",
        "replicas=8 / 8 jobs of a sweep, default size, whole process",
        "replicas=8 / 8 jobs of a sweep, default size, wall_seconds",
        "replicas=24 / 24 jobs of a sweep, depth 30, whole process",
        "replicas=24 / 24 jobs of a sweep, depth 30, wall_seconds",
        "replicas=8 / 8 jobs of a sweep, rnn T50, whole process",
        "replicas=8 / 8 jobs of a sweep, rnn T50, wall_seconds",
        "demo sweep beside one busy process / alone",
        "report over 20 runs, wall seconds",
        "report over 20 runs, peak memory GB",
    ]
    ratios, absolute = rows[:-2], rows[-2:]
    assert all(float(row["value"]) > -1 and float(row["numerator_ms"]) > 0 for row in ratios)
    assert all(float(row["value"]) > 0 and row["numerator_ms"] == "" for row in absolute)  # one measurement each
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["case_median_ms"]["run offline wall_seconds"] > 0  # read from the run's own summary.json
    assert saved["case_median_ms"]["sweep depth 30 wall_seconds"] > 0  # summed over the sweep's jobs' summaries
    assert [r["measure"] for r in saved["results"]] == measures
    for measure in measures:
        assert measure in result.stdout


def test_the_noise_rows_benchmark_times_a_measured_step_with_and_without_them():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "noise_rows.py"), "--repeats", "2"],
                            env=cli_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.match(r"measured step with / without the noise rows: \d\.\d{3} \(quartiles", result.stdout)
