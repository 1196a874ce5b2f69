"""Load: sweep folders -> one row per run, and every run's metrics as one tidy table with config columns.

A run is a job folder, or one replica of a job that trains replicas (its seed is the config's seed + replica).
A job whose record cannot be read is skipped with one SkippedJob warning naming its folder.
"""

import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow.parquet as pq
import yaml
from tqdm import tqdm

from gradlab.inits import INITS
from gradlab.record import STATUSES

# Column name -> keys into .hydra/config.yaml. Series of lines vary the swept ones (see label_series).
CONFIG_COLUMNS = {
    "depth": ("depth",), "width": ("width",), "activation": ("activation",), "init": ("init",),
    "init_gain": ("init_gain",), "lr": ("lr",), "momentum": ("momentum",), "clip_grad_norm": ("clip_grad_norm",),
    "batch_size": ("batch_size",), "epochs": ("epochs",), "seed": ("seed",), "dataset": ("dataset", "name"),
    "loss": ("loss",),
}
NOT_SERIES = ("activation", "init", "seed")  # the facets, and the seeds a line averages over
METRIC_COLUMNS = ["step", "epoch", "layer", "name", "value"]
SUMMARY_COLUMNS = ["status", "steps", "diverged_at_step", "final_train_loss", "final_train_accuracy",
                   "final_test_loss", "final_test_accuracy", "wall_seconds"]  # fmt: skip


class BrokenJob(Exception):
    """A job folder whose record cannot be read; the message says what is wrong."""


class SkippedJob(UserWarning):
    """A job folder left out of the analysis."""


class Sweep(NamedTuple):
    runs: pd.DataFrame  # one row per run: run, job, replica, config columns, summary, ratios, series labels
    metrics: pd.DataFrame  # tidy: run, step, epoch, layer, name, value, and the run's config columns
    skipped: list[str]  # one line per job folder left out, naming it and why


def is_job(path: Path) -> bool:
    return any((path / name).exists() for name in (".hydra", "summary.json", "metrics.parquet"))


def find_jobs(roots: Iterable[Path]) -> list[Path]:
    """Job folders in or below each root (a sweep, a job, or a parent of sweeps), in sweep and job order."""

    def walk(path: Path) -> Iterator[Path]:
        if is_job(path):
            yield path
            return
        for child in sorted(path.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and child.name not in ("report", "wandb"):
                yield from walk(child)

    def job_order(job: Path) -> tuple:
        number = job.name.split("_")[0]
        return str(job.parent), int(number) if number.isdigit() else math.inf, job.name

    return sorted({job for root in roots for job in walk(Path(root))}, key=job_order)


def read_config(job_dir: Path) -> dict:
    try:
        config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BrokenJob(f"no readable .hydra/config.yaml ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise BrokenJob(".hydra/config.yaml is not a mapping")
    columns = {}
    for column, keys in CONFIG_COLUMNS.items():
        value = config
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        columns[column] = value
    return {**columns, "replicas": config.get("replicas") or 1}


def read_summary(job_dir: Path) -> dict:
    try:
        summary = json.loads((job_dir / "summary.json").read_text())
    except FileNotFoundError:
        raise BrokenJob("no summary.json") from None
    except (OSError, ValueError) as error:
        raise BrokenJob(f"summary.json is not valid JSON ({error})") from None
    if not isinstance(summary, dict) or summary.get("status") not in STATUSES:
        raise BrokenJob(f"summary.json has no status among {', '.join(STATUSES)}")
    return summary


def read_metrics(job_dir: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(job_dir / "metrics.parquet")
    except FileNotFoundError:
        raise BrokenJob("no metrics.parquet") from None
    except Exception as error:  # pyarrow raises several types for a truncated or foreign file
        raise BrokenJob(f"metrics.parquet is unreadable ({type(error).__name__}: {error})") from None
    missing = set(METRIC_COLUMNS) - set(table.column_names)
    if missing:
        raise BrokenJob(f"metrics.parquet lacks the columns {sorted(missing)}")
    metrics = table.to_pandas()
    if "replica" not in metrics:
        metrics["replica"] = 0  # records from before seed replicas
    return metrics


def job_runs(job_dir: Path) -> tuple[list[dict], list[pd.DataFrame]]:
    """One row and one metrics frame per run in a job folder; raises BrokenJob."""
    config, summary, metrics = read_config(job_dir), read_summary(job_dir), read_metrics(job_dir)
    replicas = config.pop("replicas")
    per_replica = {r["replica"]: r for r in summary.get("replicas") or [] if isinstance(r, dict)}
    rows, frames = [], []
    for replica in range(replicas):
        own = {**summary, **per_replica.get(replica, {})}
        if summary["status"] not in ("completed", "diverged"):
            own["status"] = summary["status"]  # an interrupted or failed job stopped every replica
        name = f"{job_dir.parent.name}/{job_dir.name}" + (f"/replica_{replica}" if replicas > 1 else "")
        rows.append({"job": name, "job_dir": str(job_dir), "replica": replica, **config,
                     "seed": (config["seed"] or 0) + replica, **{k: own.get(k) for k in SUMMARY_COLUMNS}})
        frames.append(metrics.loc[metrics.replica == replica, METRIC_COLUMNS])
    if all(frame.empty for frame in frames):
        raise BrokenJob("metrics.parquet holds no measurements")
    return rows, frames


def load(roots: Iterable[Path], progress: bool | None = None) -> Sweep:
    """Every readable run below the roots; progress=None shows a bar on a terminal only."""
    rows, frames, skipped = [], [], []
    bar = tqdm(find_jobs(roots), desc="loading runs", unit="job", disable=None if progress is None else not progress)
    for job_dir in bar:
        try:
            job_rows, job_frames = job_runs(job_dir)
        except BrokenJob as error:
            skipped.append(f"skipped {job_dir}: {error}")
            continue
        for row, frame in zip(job_rows, job_frames, strict=True):
            row["run"] = len(rows)
            rows.append(row)
            frames.append(frame.assign(run=row["run"]))
    for message in skipped:  # after the bar has closed, so each stays one clean line
        warnings.warn(message, SkippedJob, stacklevel=2)
    if not rows:
        raise FileNotFoundError(f"no readable runs in {', '.join(map(str, roots))}")
    runs = label_series(add_ratios(pd.DataFrame(rows), pd.concat(frames, ignore_index=True)))
    metrics = pd.concat(frames, ignore_index=True)
    labels = ["series", "line", "curve", "shade", "panel", "column", "column_order"]
    config = runs[["run", *CONFIG_COLUMNS, *labels, "status", "diverged_at_step"]]
    return Sweep(runs, metrics.merge(config, on="run", how="left"), skipped)


def add_ratios(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Step-0 ratios first layer / last layer of grad_norm and delta_rms, one column each."""
    at_init = metrics[(metrics.step == 0) & metrics.name.isin(["grad_norm", "delta_rms"])]
    at_init = at_init.merge(runs[["run", "depth"]], on="run")
    first = at_init[at_init.layer == 1].pivot_table(index="run", columns="name", values="value")
    last = at_init[at_init.layer == at_init.depth].pivot_table(index="run", columns="name", values="value")
    ratios = (first / last).reindex(columns=["grad_norm", "delta_rms"])  # both, even for a run with no layers
    ratios = ratios.add_suffix("_ratio").rename_axis(columns=None).reset_index()
    return runs.merge(ratios, on="run", how="left")


def describe(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def label_series(runs: pd.DataFrame) -> pd.DataFrame:
    """Add series (what a line stands for), line (its label beside the panel's title), curve (series less depth),
    shade (0 to 1], panel, and column (init and curve: the facet column) with column_order."""
    swept = [c for c in CONFIG_COLUMNS if c not in NOT_SERIES and runs[c].nunique(dropna=False) > 1]
    keys = swept or ["depth"]
    runs = runs.assign(
        series=[", ".join(f"{k}={describe(v)}" for k, v in zip(keys, row, strict=True))
                for row in runs[keys].itertuples(index=False)],
        curve=[", ".join(f"{k}={describe(v)}" for k, v in zip(keys, row, strict=True) if k != "depth")
               for row in runs[keys].itertuples(index=False)],
    )
    order = list(runs.sort_values(keys, na_position="first").series.unique())
    runs["shade"] = runs.series.map(lambda s: (order.index(s) + 1) / len(order))  # the last series darkest
    runs["line"] = [f"depth={d}" for d in runs.depth] if "depth" in swept else runs.series  # the rest is in the title
    runs["column"] = runs.init + runs.curve.map(lambda c: f" · {c}" if c else "")
    runs["panel"] = runs.activation + " · " + runs.column
    others = [k for k in keys if k != "depth"]
    curves = list(runs.sort_values(others, na_position="first").curve.unique()) if others else [""]
    inits = list(INITS)
    runs["column_order"] = [(inits.index(i) if i in inits else len(inits)) * len(curves) + curves.index(c)
                            for i, c in zip(runs.init, runs.curve, strict=True)]
    return runs
