"""The run record: tidy metrics.parquet, jacobian.parquet and summary.json in the job's folder, written atomically."""

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

from gradlab.measurement import Measurement

METRICS_SCHEMA = pa.schema(
    [
        ("replica", pa.int64()),  # 0 unless the run trains replicas (seed + replica)
        ("step", pa.int64()),
        ("epoch", pa.int64()),
        ("layer", pa.int64()),  # null for whole-network metrics
        ("time", pa.int64()),  # a recurrent network's time step 1..T; null for every other row
        ("name", pa.string()),
        ("value", pa.float64()),
    ]
)


PANDAS_TYPES = {"int64": ("int64", "int64"), "double": ("float64", "float64"), "string": ("unicode", "object")}


def pandas_dtypes(schema: pa.Schema, nullable: tuple[str, ...]) -> pa.Schema:
    """The schema with the metadata pandas reads back dtypes from (as pandas itself writes it), so that
    pd.read_parquet gives the nullable columns pandas' Int64 (1, 2, <NA>) instead of float64 (1.0, 2.0, NaN)."""
    columns = [{"name": field.name, "field_name": field.name, "pandas_type": PANDAS_TYPES[str(field.type)][0],
                "numpy_type": "Int64" if field.name in nullable else PANDAS_TYPES[str(field.type)][1],
                "metadata": None} for field in schema]
    return schema.with_metadata({"pandas": json.dumps({"index_columns": [], "column_indexes": [], "columns": columns})})


METRICS_SCHEMA = pandas_dtypes(METRICS_SCHEMA, nullable=("layer", "time"))
JACOBIAN_SCHEMA = pa.schema(
    [
        ("replica", pa.int64()),
        ("step", pa.int64()),
        ("example", pa.int64()),  # which of the fixed test examples
        ("index", pa.int64()),  # 0 = the largest singular value
        ("singular_value", pa.float64()),  # e^{ln s}: 0 for an exact zero, and below float64's range (1e-308)
        ("log_singular_value", pa.float64()),  # ln s, exact at any depth; -inf for an exact zero
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


class PartedTable:
    """One Parquet table written in O(rows): while it grows, `path` is a dataset folder, each flush adding a
    part with the rows since the last (pd.read_parquet and pq.read_table read the folder as one table), so a
    SIGKILL loses at most the rows after the last flush; close() replaces the folder with one file."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self.pending: list[tuple] = []
        self.parts = 0
        if path.is_dir():  # an earlier run of this job (one being re-run)
            shutil.rmtree(path)
        path.unlink(missing_ok=True)

    def flush(self) -> None:
        """Write the rows added since the last flush as the folder's next part."""
        if not self.pending and self.parts:
            return
        columns = list(zip(*self.pending, strict=True)) if self.pending else [[] for _ in self.schema.names]
        table = pa.table(dict(zip(self.schema.names, columns, strict=True)), schema=self.schema)
        self.path.mkdir(exist_ok=True)
        write_atomically(self.path / f"part-{self.parts:05d}.parquet", lambda tmp: pq.write_table(table, tmp))
        self.pending, self.parts = [], self.parts + 1

    def close(self) -> None:
        """Flush, then write the parts as one file in place of the folder."""
        self.flush()
        table = pq.read_table(self.path, schema=self.schema)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        pq.write_table(table, tmp)
        parts = self.path.with_name(f".{self.path.name}.parts")
        shutil.rmtree(parts, ignore_errors=True)
        os.replace(self.path, parts)  # a folder cannot be renamed over: move it aside, then drop it
        os.replace(tmp, self.path)
        shutil.rmtree(parts, ignore_errors=True)


class RunRecord:
    """Takes measurements and writes them to run_dir as long rows: metrics.parquet, and jacobian.parquet
    for the measurements that carry a Jacobian spectrum. Both are flushed at every epoch's end.

    Each measurement's rows are added whole (one list.extend), so a signal arriving mid-way never leaves
    the columns misaligned: the record written from a `finally` is always consistent.
    """

    def __init__(self, run_dir: Path) -> None:
        """A new record for the job in run_dir; the tables of an earlier run there (one being re-run) are removed."""
        self.run_dir = Path(run_dir)
        self.metrics = PartedTable(self.run_dir / "metrics.parquet", METRICS_SCHEMA)
        self.jacobian = PartedTable(self.run_dir / "jacobian.parquet", JACOBIAN_SCHEMA)
        self.last_step = 0
        self.whole_network: dict[int, dict[str, float]] = {}  # per replica, the last value of each whole-network metric

    def append(self, m: Measurement) -> None:
        self.metrics.pending.extend((m.replica, m.step, m.epoch, *row) for row in m.rows)
        if m.spectrum is not None:
            self.jacobian.pending.extend((m.replica, m.step, example, index, math.exp(log), log)
                                         for example, logs in enumerate(m.spectrum)
                                         for index, log in enumerate(logs))
        self.last_step = m.step
        self.whole_network.setdefault(m.replica, {}).update(
            (name, value) for layer, time, name, value in m.rows if layer is None and time is None)
        if m.epoch_end:
            self.flush()

    def latest(self) -> dict[int, dict[str, float]]:
        """Per replica, the last value of each whole-network metric."""
        return self.whole_network

    def flush(self) -> None:
        self.metrics.flush()
        if self.jacobian.pending or self.jacobian.parts:
            self.jacobian.flush()

    def close(self) -> None:
        """Each table as one file; jacobian.parquet only when some measurement carried a spectrum."""
        self.metrics.close()
        if self.jacobian.pending or self.jacobian.parts:
            self.jacobian.close()

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json as strict JSON: NaN and infinities are written as null."""
        text = json.dumps(finite_or_none(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"
        write_atomically(self.run_dir / "summary.json", lambda tmp: tmp.write_text(text))
