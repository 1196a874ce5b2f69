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
        ("replica", pa.int64()),  # 0 unless the run trains replicas (seed + replica)
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
    """Collects measurements and writes them to run_dir as long rows; flush() may be called any time.

    Each measurement is kept whole (one list.append), so a signal arriving mid-way never leaves
    the columns misaligned: the record written from a `finally` is always consistent.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.measurements: list[Measurement] = []

    def append(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        if measurement.epoch_end:
            self.flush()

    @property
    def last_step(self) -> int:
        return self.measurements[-1].step if self.measurements else 0

    def latest(self) -> dict[int, dict[str, float]]:
        """Per replica, the last value of each whole-network metric; one pass over the record."""
        found: dict[int, dict[str, float]] = {}
        for m in self.measurements:
            found.setdefault(m.replica, {}).update((name, value) for layer, name, value in m.rows if layer is None)
        return found

    def table(self) -> pa.Table:
        rows = [
            (m.replica, m.step, m.epoch, layer, name, value)
            for m in self.measurements for layer, name, value in m.rows
        ]
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in METRICS_SCHEMA.names]
        return pa.table(dict(zip(METRICS_SCHEMA.names, columns, strict=True)), schema=METRICS_SCHEMA)

    def flush(self) -> None:
        table = self.table()
        write_atomically(self.run_dir / "metrics.parquet", lambda tmp: pq.write_table(table, tmp))

    def write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        write_atomically(self.run_dir / "summary.json", lambda tmp: tmp.write_text(text))
