"""The run record: tidy metrics.parquet and summary.json in the job's folder, written atomically."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gradlab.train import Measurement

METRICS_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("epoch", pa.int64()),
        ("layer", pa.int64()),  # null for whole-network metrics
        ("name", pa.string()),
        ("value", pa.float64()),
    ]
)
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


def write_atomically(path: Path, write: Any) -> None:
    """Call write(tmp_path), then rename over path: readers see the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def git_commit() -> str | None:
    """The commit of the code that runs, when it lives in a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for package in ("torch", "numpy", "hydra-core", "omegaconf", "wandb", "pyarrow", "gradlab"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


class RunRecord:
    """Collects measurements as long rows and writes them to run_dir; flush() may be called any time."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.columns: dict[str, list] = {name: [] for name in METRICS_SCHEMA.names}
        self.unflushed = 0
        self.latest: dict[str, float] = {}  # the last value of each whole-network metric

    def append(self, measurement: Measurement) -> None:
        for layer, name, value in measurement.rows:
            self.columns["step"].append(measurement.step)
            self.columns["epoch"].append(measurement.epoch)
            self.columns["layer"].append(layer)
            self.columns["name"].append(name)
            self.columns["value"].append(value)
            if layer is None:
                self.latest[name] = value
        self.unflushed += len(measurement.rows)
        if measurement.epoch_end:
            self.flush()

    def flush(self) -> None:
        table = pa.table(self.columns, schema=METRICS_SCHEMA)
        write_atomically(self.run_dir / "metrics.parquet", lambda tmp: pq.write_table(table, tmp))
        self.unflushed = 0

    def write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        write_atomically(self.run_dir / "summary.json", lambda tmp: tmp.write_text(text))
