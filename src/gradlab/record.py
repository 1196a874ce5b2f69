"""The run record: tidy metrics.parquet and summary.json in the job's folder, written atomically."""

import json
import math
import os
import shutil
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


def finite_or_none(value: Any) -> Any:
    """value with every non-finite float, at any depth of dicts and lists, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


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
    """Collects measurements and writes them to run_dir as long rows, in O(rows) over the whole run.

    While the run goes, metrics.parquet is a Parquet dataset folder: each flush adds one part with the rows
    measured since the last (pd.read_parquet and pq.read_table read the folder as one table), so a SIGKILL
    loses at most what came after the last flush. close() replaces the folder with one file.
    Each measurement is kept whole (one list.append), so a signal arriving mid-way never leaves
    the columns misaligned: the record written from a `finally` is always consistent.
    """

    def __init__(self, run_dir: Path) -> None:
        """A new record for the job in run_dir; metrics of an earlier run there (one being re-run) are removed."""
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.parquet"
        self.measurements: list[Measurement] = []
        self.flushed = 0  # measurements already in a part
        self.parts = 0
        if self.path.is_dir():
            shutil.rmtree(self.path)
        self.path.unlink(missing_ok=True)

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

    def table(self, start: int = 0) -> pa.Table:
        """The measurements from index `start` on, as long rows."""
        rows = [
            (m.replica, m.step, m.epoch, layer, name, value)
            for m in self.measurements[start:] for layer, name, value in m.rows
        ]
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in METRICS_SCHEMA.names]
        return pa.table(dict(zip(METRICS_SCHEMA.names, columns, strict=True)), schema=METRICS_SCHEMA)

    def flush(self) -> None:
        """Write the measurements not yet written as the folder's next part."""
        count = len(self.measurements)
        if count == self.flushed and self.parts:
            return
        table = self.table(self.flushed)
        self.path.mkdir(exist_ok=True)
        write_atomically(self.path / f"part-{self.parts:05d}.parquet", lambda tmp: pq.write_table(table, tmp))
        self.flushed, self.parts = count, self.parts + 1

    def close(self) -> None:
        """Write the whole record as one metrics.parquet file in place of the folder of parts."""
        table = self.table()
        tmp = self.run_dir / ".metrics.parquet.tmp"
        pq.write_table(table, tmp)
        if self.path.is_dir():
            parts = self.run_dir / ".metrics.parquet.parts"
            shutil.rmtree(parts, ignore_errors=True)
            os.replace(self.path, parts)  # a folder cannot be renamed over: move it aside, then drop it
            os.replace(tmp, self.path)
            shutil.rmtree(parts, ignore_errors=True)
        else:
            os.replace(tmp, self.path)
        self.flushed = len(self.measurements)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json as strict JSON: NaN and infinities are written as null."""
        text = json.dumps(finite_or_none(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"
        write_atomically(self.run_dir / "summary.json", lambda tmp: tmp.write_text(text))
