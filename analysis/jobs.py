"""Job folders: finding them below a sweep, and one job's config, summary and record footer as its runs' rows.

A run is a job folder, or one replica of a job that trains replicas (its seed is the config's seed + replica).
Its row holds every key of its .hydra/config.yaml (dotted names: dataset.kind), the summary, and the facts the
job recorded about its network and data (net, its family; layer_sizes, loss_in_force, input_q0_quantiles, sigma_w2,
sigma_b2; a recurrent network's sigma_w2 is one number, and it records sigma_u2, input_q0_mean and each replica's
spectral_radius) for the figures and the theory. A job whose config, summary or metrics.parquet footer cannot be read
raises BrokenJob, naming why.
"""

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from analysis.config_file import read_config_text
from analysis.families import recorded_net
from analysis.records import record_files
from analysis.series import KEYS_ADDED_LATER, flatten
from gradlab.record import STATUSES

SUMMARY_COLUMNS = ["status", "steps", "diverged_at_step", "final_train_loss", "final_train_accuracy",
                   "final_test_loss", "final_test_accuracy", "wall_seconds"]  # fmt: skip
FACT_COLUMNS = ["net", "layer_sizes", "loss_in_force", "input_q0_quantiles", "sigma_w2", "sigma_b2"]  # summary's
REGRESSION_COLUMNS = ["final_train_mse", "final_test_mse"]  # a regression run's, mean (f - y)^2, for its accuracies
REQUIRED_METRIC_COLUMNS = ["step", "epoch", "layer", "name", "value"]  # replica is 0 where a record lacks it


class BrokenJob(Exception):
    """A job folder whose record cannot be read; the message says what is wrong."""


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
        config = read_config_text((job_dir / ".hydra" / "config.yaml").read_text())
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


def recorded_number(value: object) -> float | None:
    """A number from summary.json as a float (not a bool), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_facts(summary: dict) -> dict:
    """What the job recorded about its network and data (batch_in_force: the examples per step, batch_size=0's the
    whole training set); None for a fact its summary lacks (older records), but
    sigma_b2, 0 before biases could be drawn, and net, an MLP before the family was recorded. sigma_w2: one per layer
    (an MLP's, a tuple) or the recurrent weights' (a float); spectral_radius: one per replica, a tuple."""
    loss, sigma_b2, sigma_w2 = summary.get("loss_in_force"), summary.get("sigma_b2", 0.0), summary.get("sigma_w2")
    return {"net": recorded_net(summary), "layer_sizes": recorded_list(summary.get("layer_sizes"), int),
            "loss_in_force": loss if isinstance(loss, str) else None,
            "input_q0_quantiles": recorded_list(summary.get("input_q0_quantiles"), (int, float)),
            "sigma_w2": recorded_list(sigma_w2, (int, float)) or recorded_number(sigma_w2),
            "sigma_b2": float(sigma_b2) if isinstance(sigma_b2, int | float) else None,
            "sigma_u2": recorded_number(summary.get("sigma_u2")),
            "input_q0_mean": recorded_number(summary.get("input_q0_mean")),
            "spectral_radius": recorded_list(summary.get("spectral_radius"), (int, float)),
            "baseline_metric": metric if isinstance(metric := summary.get("baseline_metric"), str) else None,
            "baseline": recorded_number(summary.get("baseline")),
            "batch_in_force": recorded_number(summary.get("batch_in_force"))}


def check_metrics(job_dir: Path) -> int:
    """The number of rows of the job's metrics.parquet, from its footer (or its parts'): raises BrokenJob for a
    missing, truncated or foreign record, or one without rows. The rows themselves are read for all jobs at once."""
    path = job_dir / "metrics.parquet"
    files = record_files(path)
    if not files:
        raise BrokenJob("no metrics.parquet")
    rows = 0
    for part in files:
        try:
            footer = pq.read_metadata(part)
        except Exception as error:  # pyarrow raises several types for a truncated or foreign file
            raise BrokenJob(f"metrics.parquet is unreadable ({type(error).__name__}: {error})") from None
        missing = set(REQUIRED_METRIC_COLUMNS) - set(footer.schema.names)
        if missing:
            raise BrokenJob(f"metrics.parquet lacks the columns {sorted(missing)}")
        rows += footer.num_rows
    if not rows:
        raise BrokenJob("metrics.parquet holds no measurements")
    return rows


def job_runs(job_dir: Path) -> tuple[list[str], list[dict]]:
    """The job's config keys and one row per run in its folder (a replica: seed + replica); raises BrokenJob."""
    config, summary = read_config(job_dir), read_summary(job_dir)
    check_metrics(job_dir)
    facts, replicas = read_facts(summary), config.get("replicas") or 1
    per_replica = {r["replica"]: r for r in summary.get("replicas") or [] if isinstance(r, dict)}
    rows = []
    for replica in range(replicas):
        own = {**summary, **per_replica.get(replica, {})}
        if summary["status"] not in ("completed", "diverged"):
            own["status"] = summary["status"]  # an interrupted or failed job stopped every replica
        name = f"{job_dir.parent.name}/{job_dir.name}" + (f"/replica_{replica}" if replicas > 1 else "")
        radii = facts["spectral_radius"]  # each replica's own W
        rows.append({"job": name, "job_dir": str(job_dir), "replica": replica, **config,
                     "seed": (config.get("seed") or 0) + replica,
                     **{k: own.get(k) for k in [*SUMMARY_COLUMNS, *REGRESSION_COLUMNS]},
                     **facts, "spectral_radius": float(radii[replica]) if radii and replica < len(radii) else None})
    return list(config), rows
