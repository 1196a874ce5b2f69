"""Load: sweep folders -> one row per run, and every run's metrics as one tidy table with its config columns.

A run is a job folder, or one replica of a job that trains replicas (its seed is the config's seed + replica).
Its row holds every key of its .hydra/config.yaml (dotted names: dataset.kind), the summary, and the facts the
job recorded about its network and data (layer_sizes, loss_in_force, input_q0_quantiles, sigma_w2, sigma_b2) for
the theory. A job whose record cannot be read is skipped with one SkippedJob warning naming its folder. The
input-output Jacobian's spectra at init (jacobian.parquet, step 0 only) come along where a job recorded them.
"""

import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from tqdm import tqdm

from analysis.series import KEYS_ADDED_LATER, LABELS, flatten, label_series, setting_keys, swept_keys
from gradlab.record import STATUSES

METRIC_COLUMNS = ["step", "epoch", "layer", "name", "value"]
SUMMARY_COLUMNS = ["status", "steps", "diverged_at_step", "final_train_loss", "final_train_accuracy",
                   "final_test_loss", "final_test_accuracy", "wall_seconds"]  # fmt: skip
FACT_COLUMNS = ["layer_sizes", "loss_in_force", "input_q0_quantiles", "sigma_w2", "sigma_b2"]  # summary.json's names
SPECTRUM_COLUMNS = ["replica", "singular_value"]  # what the spectra figure needs of jacobian.parquet, at step 0
ALWAYS_IN_METRICS = ["depth", "activation", "init", "seed", "norm"]  # facets; seeds for the bands; norm: theory?


class BrokenJob(Exception):
    """A job folder whose record cannot be read; the message says what is wrong."""


class SkippedJob(UserWarning):
    """A job folder left out of the analysis."""


class NoRecordedFacts(UserWarning):
    """Runs whose summary.json predates the recorded layer sizes and input lengths: they get no theory."""


class UnreadableSpectra(UserWarning):
    """A job whose jacobian.parquet cannot be read: it is loaded without its spectra."""


class Sweep(NamedTuple):
    runs: pd.DataFrame  # one row per run: run, job, replica, config columns, summary, facts, ratios, series labels
    metrics: pd.DataFrame  # tidy: run, step, epoch, layer, name, value, the facets, swept keys and series labels
    skipped: list[str]  # one line per job folder left out, naming it and why
    config_keys: list[str]  # every config key of the runs, dotted, in config order: runs' config columns
    spectra: pd.DataFrame  # J's singular values at init: run, singular_value, the facets and series labels


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
    """The job's config, flattened to dotted keys (dataset.kind); a key added later gets the value it stands for."""
    try:
        config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BrokenJob(f"no readable .hydra/config.yaml ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise BrokenJob(".hydra/config.yaml is not a mapping")
    flat = flatten(config)
    return flat | {key: value for key, value in KEYS_ADDED_LATER.items() if key not in flat}


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


def recorded_list(value: object, kind: type | tuple[type, ...]) -> tuple | None:
    """A non-empty list of `kind` from summary.json as a tuple (hashable, for the theory's cache), else None."""
    if isinstance(value, list) and value and all(isinstance(item, kind) for item in value):
        return tuple(value)
    return None


def read_facts(summary: dict) -> dict:
    """What the job recorded about its network and data; None for a fact its summary lacks (older records), but
    sigma_b2, 0 before biases could be drawn."""
    loss, sigma_b2 = summary.get("loss_in_force"), summary.get("sigma_b2", 0.0)
    return {"layer_sizes": recorded_list(summary.get("layer_sizes"), int),
            "loss_in_force": loss if isinstance(loss, str) else None,
            "input_q0_quantiles": recorded_list(summary.get("input_q0_quantiles"), (int, float)),
            "sigma_w2": recorded_list(summary.get("sigma_w2"), (int, float)),
            "sigma_b2": float(sigma_b2) if isinstance(sigma_b2, int | float) else None}


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


def read_spectra(job_dir: Path) -> pd.DataFrame:
    """J's singular values at step 0 (replica, singular_value) from jacobian.parquet: none where the job has no such
    file (J not measured, or recorded before it was), and none, with a warning, where the file is unreadable."""
    path = job_dir / "jacobian.parquet"
    if not path.exists():
        return pd.DataFrame(columns=SPECTRUM_COLUMNS)
    try:  # filtered after reading: read_table(filters=...) takes 6 ms a file here, this 1 ms
        table = pq.read_table(path, columns=["step", *SPECTRUM_COLUMNS])
        return table.filter(pc.equal(table["step"], 0)).select(SPECTRUM_COLUMNS).to_pandas()
    except Exception as error:  # pyarrow raises several types for a truncated or foreign file
        warnings.warn(f"no Jacobian spectra for {job_dir}: jacobian.parquet is unreadable ({type(error).__name__})",
                      UnreadableSpectra, stacklevel=2)
        return pd.DataFrame(columns=SPECTRUM_COLUMNS)


def job_runs(job_dir: Path) -> tuple[list[str], list[dict], list[pd.DataFrame], list[pd.DataFrame]]:
    """The job's config keys, and per run in its folder one row, one metrics frame and one frame of J's singular
    values at init; raises BrokenJob."""
    config, summary, metrics = read_config(job_dir), read_summary(job_dir), read_metrics(job_dir)
    facts, replicas, spectra = read_facts(summary), config.get("replicas") or 1, read_spectra(job_dir)
    per_replica = {r["replica"]: r for r in summary.get("replicas") or [] if isinstance(r, dict)}
    rows, frames, spectrum_frames = [], [], []
    for replica in range(replicas):
        own = {**summary, **per_replica.get(replica, {})}
        if summary["status"] not in ("completed", "diverged"):
            own["status"] = summary["status"]  # an interrupted or failed job stopped every replica
        name = f"{job_dir.parent.name}/{job_dir.name}" + (f"/replica_{replica}" if replicas > 1 else "")
        rows.append({"job": name, "job_dir": str(job_dir), "replica": replica, **config,
                     "seed": (config.get("seed") or 0) + replica, **{k: own.get(k) for k in SUMMARY_COLUMNS},
                     **facts})
        frames.append(metrics.loc[metrics.replica == replica, METRIC_COLUMNS])
        spectrum_frames.append(spectra.loc[spectra.replica == replica, ["singular_value"]])
    if all(frame.empty for frame in frames):
        raise BrokenJob("metrics.parquet holds no measurements")
    return list(config), rows, frames, spectrum_frames


def load(roots: Iterable[Path], progress: bool | None = None) -> Sweep:
    """Every readable run below the roots; progress=None shows a bar on a terminal only."""
    rows, frames, spectra, skipped, config_keys = [], [], [], [], {}
    bar = tqdm(find_jobs(roots), desc="loading runs", unit="job", disable=None if progress is None else not progress)
    for job_dir in bar:
        try:
            job_keys, job_rows, job_frames, job_spectra = job_runs(job_dir)
        except BrokenJob as error:
            skipped.append(f"skipped {job_dir}: {error}")
            continue
        config_keys.update(dict.fromkeys(job_keys))  # a dict keeps the keys in their first job's order
        for row, frame, spectrum in zip(job_rows, job_frames, job_spectra, strict=True):
            row["run"] = len(rows)
            rows.append(row)
            frames.append(frame.assign(run=row["run"]))
            spectra.append(spectrum.assign(run=row["run"]))
    for message in skipped:  # after the bar has closed, so each stays one clean line
        warnings.warn(message, SkippedJob, stacklevel=2)
    if not rows:
        raise FileNotFoundError(f"no readable runs in {', '.join(map(str, roots))}")
    warn_of_missing_facts(rows)
    metrics = pd.concat(frames, ignore_index=True)
    runs = label_series(add_learning_steps(add_ratios(pd.DataFrame(rows), metrics), metrics), config_keys)
    identity = dict.fromkeys([*ALWAYS_IN_METRICS, *swept_keys(runs, setting_keys(config_keys))])
    config = runs[["run", *identity, *LABELS, "status", "diverged_at_step"]]
    metrics = metrics.merge(config, on="run", how="left")
    spectra = pd.concat(spectra, ignore_index=True).astype({"singular_value": float, "run": int})
    return Sweep(runs, metrics, skipped, list(config_keys), spectra.merge(config, on="run", how="left"))


def warn_of_missing_facts(rows: list[dict]) -> None:
    """One warning for all the runs whose summary does not record what the theory needs."""
    missing = sum(row["layer_sizes"] is None or row["input_q0_quantiles"] is None for row in rows)
    if missing:
        warnings.warn(f"{missing} of {len(rows)} runs have no layer_sizes or input_q0_quantiles in summary.json "
                      "(recorded before they were): no theory for them", NoRecordedFacts, stacklevel=3)


def add_ratios(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Step-0 ratios first layer / last layer of grad_norm and delta_rms, one column each."""
    at_init = metrics[(metrics.step == 0) & metrics.name.isin(["grad_norm", "delta_rms"])]
    at_init = at_init.merge(runs[["run", "depth"]], on="run")
    first = at_init[at_init.layer == 1].pivot_table(index="run", columns="name", values="value")
    last = at_init[at_init.layer == at_init.depth].pivot_table(index="run", columns="name", values="value")
    ratios = (first / last).reindex(columns=["grad_norm", "delta_rms"])  # both, even for a run with no layers
    ratios = ratios.add_suffix("_ratio").rename_axis(columns=None).reset_index()
    return runs.merge(ratios, on="run", how="left")


LEARNED_LOSS = 0.5  # "learned": the mini-batch loss below this (chance is ln 10 = 2.3 on ten classes)


def add_learning_steps(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """learning_step: the first measured step whose mini-batch loss is below LEARNED_LOSS (Saxe et al. 2014's
    learning time); empty for a run that never gets there."""
    learned = metrics[(metrics.name == "batch_loss") & (metrics.value < LEARNED_LOSS)]
    return runs.assign(learning_step=runs.run.map(learned.groupby("run").step.min()))
