"""Load: sweep folders -> one row per run, and the metrics rows the report reads as one tidy table with the runs'
config columns.

A run's row is its job's config, summary and recorded facts (analysis.jobs). Its measurements are read for all jobs
at once, and only those the figures draw (analysis.records): every step of the losses and of J's whole-network
metrics, the per-layer metrics at step 0 and, for the profiles of figures 7 and 9, at the last step where all are
finite, update_ratio at the layers figure 8 draws, and grad_norm of the deepest runs at every step, averaged over
seeds as figure 3's heatmap cells: about a tenth of the rows recorded. A job whose record cannot be read is skipped
with one SkippedJob warning naming its folder. The input-output Jacobian's spectra at init (jacobian.parquet, step 0
only) come along where a job recorded them. The run columns of the row tables (labels, facets, swept keys) are
pandas categories, a code of a byte or two per row, but depth, a number. A row keeps its time (pandas' Int64: null
on the layer axis, and in records from before time was written), a run its net (analysis.families decides which
rows and runs the per-layer figures and the theory read).
"""

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.families import family, layer_axis_time, layer_rows, whole_network_rows
from analysis.jobs import BrokenJob, find_jobs, job_runs
from analysis.needs import DELTA_RMS, GRAD_NORM, LOSSES, MIN_BATCH_SIZES, drawn_layers
from analysis.records import Records, read_metrics, read_spectra, record_files
from analysis.series import LABELS, label_series, setting_keys, swept_keys

ALWAYS_IN_METRICS = ["depth", "activation", "init", "seed", "norm", "net"]  # facets; seeds: bands; norm: theory?; net:
# the family (analysis.families: whether its rows are drawn by layer)
SPECTRUM_LABELS = ["activation", "init", "series", "line", "shade", "column", "column_order"]  # what figure 10 reads
NUMBERS = ["depth"]  # run columns the figures compute with: numbers in the row tables, every other one categories


class SkippedJob(UserWarning):
    """A job folder left out of the analysis."""


class NoRecordedFacts(UserWarning):
    """Runs whose summary.json predates the recorded layer sizes and input lengths: they get no theory."""


class UnreadableSpectra(UserWarning):
    """A job whose jacobian.parquet cannot be read: it is loaded without its spectra."""


class Sweep(NamedTuple):
    runs: pd.DataFrame  # one row per run: run, job, replica, config columns, summary, facts, ratios, series labels
    metrics: pd.DataFrame  # the tidy rows read: run, step, epoch, layer, time, name, value, net, facets, labels
    skipped: list[str]  # one line per job folder left out, naming it and why
    config_keys: list[str]  # every config key of the runs, dotted, in config order: runs' config columns
    spectra: pd.DataFrame  # J's singular values at init: run, singular_value and SPECTRUM_LABELS
    heatmap: pd.DataFrame  # figure 3's cells: grad_norm rows of the deepest runs, one per panel, layer and step


class JobRuns(NamedTuple):
    job_dir: Path
    config_keys: list[str]
    rows: list[dict]  # one per run


def tqdm_disable(progress: bool | None) -> bool | None:
    """progress as tqdm's disable argument: None shows a bar on a terminal only."""
    return None if progress is None else not progress


def read_jobs(job_dirs: list[Path], progress: bool | None) -> tuple[list[JobRuns], dict[Path, str]]:
    """Every job's config, summary and metrics footer; the jobs that cannot be read, with why."""
    jobs, broken = [], {}
    for job_dir in tqdm(job_dirs, desc="reading configs", unit="job", disable=tqdm_disable(progress)):
        try:
            jobs.append(JobRuns(job_dir, *job_runs(job_dir)))
        except BrokenJob as error:
            broken[job_dir] = str(error)
    return jobs, broken


def drawn_by_layer(job: JobRuns) -> bool:
    """Whether the job's family has per-layer rows (figures 3 and 8 draw the deepest such jobs)."""
    return family(job.rows[0]["net"]).layer_profiles


def deepest_depth(jobs: list[JobRuns]) -> int:
    return max((job.rows[0]["depth"] for job in jobs if drawn_by_layer(job)), default=0)


def config_groups(jobs: list[JobRuns], keys: list[str]) -> list[int]:
    """One number per configuration (the setting keys' values, seeds apart), for each job."""
    configs = pd.DataFrame([{key: job.rows[0].get(key) for key in keys} for job in jobs], columns=keys)
    if not keys or configs.empty:
        return [0] * len(jobs)
    return configs.astype(object).groupby(keys, dropna=False, sort=False).ngroup().tolist()


def read_rows(jobs: list[JobRuns], progress: bool | None) -> tuple[list[JobRuns], Records, dict[Path, str]]:
    """The rows the report reads of the jobs' metrics, indexed by the jobs returned, and the jobs among them whose
    record turned out unreadable (their runs get no rows). Read again without those only where they were all the
    deepest jobs, which take more rows (figures 3 and 8)."""
    keys = setting_keys(dict.fromkeys(key for job in jobs for key in job.config_keys))
    while True:
        deepest = deepest_depth(jobs)
        groups = [group if job.rows[0]["depth"] == deepest and drawn_by_layer(job) else -1
                  for job, group in zip(jobs, config_groups(jobs, keys), strict=True)]
        with tqdm(total=len(jobs), desc="reading records", unit="job", disable=tqdm_disable(progress)) as bar:
            records = read_metrics([record_files(job.job_dir / "metrics.parquet") for job in jobs],
                                   [len(job.rows) for job in jobs], groups, drawn_layers(deepest), bar.update,
                                   whole_noise=batch_sweep(jobs))
        broken = {jobs[index].job_dir: f"metrics.parquet is unreadable ({message})"
                  for index, message in records.unreadable.items()}
        if deepest_depth([job for job in jobs if job.job_dir not in broken]) == deepest:
            return jobs, records, broken
        jobs = [job for job in jobs if job.job_dir not in broken]


def batch_sweep(jobs: list[JobRuns]) -> bool:
    """Whether the jobs train at MIN_BATCH_SIZES batch sizes or more (figure 19: every run's noise rows are read)."""
    return len({row.get("batch_in_force") for job in jobs for row in job.rows} - {None}) >= MIN_BATCH_SIZES


def renumbered(metrics: pd.DataFrame, scanned: list[int], kept: list[int]) -> pd.DataFrame:
    """metrics' runs numbered as the kept jobs' (runs per job) where they were numbered as the scanned jobs'."""
    if scanned == kept:
        return metrics
    old_first, new_first = np.cumsum([0, *scanned]), np.cumsum([0, *kept])
    job = np.searchsorted(old_first, metrics.run.to_numpy(), side="right") - 1  # a kept job's rows only
    return metrics.assign(run=new_first[job] + metrics.run.to_numpy() - old_first[job])


def load(roots: Iterable[Path], progress: bool | None = None) -> Sweep:
    """Every readable run below the roots; progress=None shows bars on a terminal only."""
    jobs, records, runs_per_job, skipped = read_sweep(find_jobs(roots), progress)
    rows = [row for job in jobs for row in job.rows]
    if not rows:
        raise FileNotFoundError(f"no readable runs in {', '.join(map(str, roots))}")
    for run, row in enumerate(rows):
        row["run"] = run
    warn_of_missing_facts(rows)
    config_keys = list(dict.fromkeys(key for job in jobs for key in job.config_keys))  # in their first job's order
    runs = label_series(pd.DataFrame(rows), config_keys)
    identity = dict.fromkeys([*ALWAYS_IN_METRICS, *swept_keys(runs, setting_keys(config_keys))])
    config = [*identity, *LABELS, "status", "diverged_at_step"]
    metrics = with_run_columns(records.metrics, runs, config)
    at_init = layer_rows(metrics, [DELTA_RMS, GRAD_NORM])
    runs = add_learning_steps(add_ratios(runs, at_init), whole_network_rows(metrics, LOSSES))
    sums = records.heatmap
    heatmap = seed_mean_heatmap(sums, np.cumsum([0, *runs_per_job])[sums.first_job.to_numpy(dtype=np.int64)], runs)
    spectra = with_run_columns(read_jobs_spectra(jobs, progress), runs, SPECTRUM_LABELS)
    return Sweep(runs, metrics, skipped, config_keys, spectra, with_run_columns(heatmap, runs, config))


def read_sweep(job_dirs: list[Path], progress: bool | None) -> tuple[list[JobRuns], Records, list[int], list[str]]:
    """The readable jobs, the rows read of their metrics (runs numbered as theirs), the runs of every job scanned (0
    for one found unreadable: the heatmap's first_job counts them) and one line per job skipped, each warned of."""
    jobs, broken = read_jobs(job_dirs, progress)
    jobs, records, unreadable = read_rows(jobs, progress)
    broken |= unreadable
    skipped = [f"skipped {job_dir}: {broken[job_dir]}" for job_dir in job_dirs if job_dir in broken]
    for message in skipped:  # after the bars have closed, so each stays one clean line
        warnings.warn(message, SkippedJob, stacklevel=3)
    runs_per_job = [0 if job.job_dir in broken else len(job.rows) for job in jobs]
    metrics = renumbered(records.metrics, [len(job.rows) for job in jobs], runs_per_job)
    return [job for job in jobs if job.job_dir not in broken], records._replace(metrics=metrics), runs_per_job, skipped


def read_jobs_spectra(jobs: list[JobRuns], progress: bool | None) -> pd.DataFrame:
    """J's singular values at init of every job that recorded them; an unreadable jacobian.parquet is named in a
    warning and its job kept without them."""
    with tqdm(total=len(jobs), desc="reading spectra", unit="job", disable=tqdm_disable(progress)) as bar:
        spectra = read_spectra([record_files(job.job_dir / "jacobian.parquet") for job in jobs],
                               [len(job.rows) for job in jobs], bar.update)
    for index, message in spectra.unreadable.items():
        warnings.warn(f"no Jacobian spectra for {jobs[index].job_dir}: jacobian.parquet is unreadable "
                      f"({message.split(':')[0]})", UnreadableSpectra, stacklevel=3)
    return spectra.values


def with_run_columns(frame: pd.DataFrame, runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """frame (rows with their run) with its run's value of each column, as categories: a code of a byte or two per
    row (a run has one value) rather than a string or a number; depth, which figures compare and take the maximum
    of, stays a number, as does a column whose values pandas cannot make categories of."""
    position = frame.run.to_numpy()  # runs.run is 0..n-1, in order
    added = {}
    for column in dict.fromkeys(columns):
        values = runs[column]
        try:
            categories = None if column in NUMBERS else pd.Categorical(values)
        except TypeError:  # unhashable values
            categories = None
        added[column] = (values.to_numpy()[position] if categories is None
                         else pd.Categorical.from_codes(categories.codes[position], categories.categories))
    return frame.assign(**added)


def concat_rows(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """first's rows, then second's: a column of categories in first stays one, over both frames' values (pd.concat
    would make it a string per row where the categories differ)."""
    first, second = first.copy(deep=False), second.copy(deep=False)
    for column in first.columns:
        if isinstance(first[column].dtype, pd.CategoricalDtype) and column in second:
            categories = first[column].cat.categories
            categories = categories.append(pd.Index(second[column].dropna().unique()).difference(categories))
            first[column] = first[column].cat.set_categories(categories)
            second[column] = pd.Categorical(second[column], categories=categories)
    return pd.concat([first, second], ignore_index=True)


def seed_mean_heatmap(sums: pd.DataFrame, first_run: np.ndarray, runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's cells from the heatmap's sums per configuration (records.heatmap_sums, first_run: each row's
    configuration's first run): per panel, layer and step, grad_norm's geometric mean over the seeds where it is
    positive and finite, as grad_norm_heatmap takes it, as rows of the panel's first run, panels in run order."""
    cells = sums.assign(panel=runs.panel.to_numpy()[first_run], run=first_run)
    cells = cells.groupby(["panel", "layer", "step"], sort=False).agg(
        log10_sum=("log10_sum", "sum"), usable=("usable", "sum"), run=("run", "min")).reset_index()
    cells["run"] = cells.groupby("panel", sort=False).run.transform("min")
    cells = cells.sort_values(["run", "layer", "step"], kind="stable")
    log10 = (cells.log10_sum / cells.usable.where(cells.usable > 0)).to_numpy(dtype=float)  # NaN: no usable seed
    return pd.DataFrame({"run": cells.run.to_numpy(dtype=np.int64), "step": cells.step.to_numpy(dtype=np.int64),
                         "layer": cells.layer.to_numpy(dtype=float), "time": layer_axis_time(len(cells)),
                         "name": GRAD_NORM, "value": 10**log10})


def warn_of_missing_facts(rows: list[dict]) -> None:
    """One warning for all the runs of a family the mean-field theory describes whose summary does not record what
    the theory needs (a recurrent run has no layer sizes)."""
    missing = sum(family(row["net"]).mean_field and (row["layer_sizes"] is None or row["input_q0_quantiles"] is None)
                  for row in rows)
    if missing:
        warnings.warn(f"{missing} of {len(rows)} runs have no layer_sizes or input_q0_quantiles in summary.json "
                      "(recorded before they were): no theory for them", NoRecordedFacts, stacklevel=3)


def add_ratios(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Step-0 ratios first layer / last layer of grad_norm and delta_rms, one column each, from the per-layer rows
    (families.layer_rows, with their run's depth)."""
    at_init = layers[(layers.step == 0) & layers.name.isin(["grad_norm", "delta_rms"])]
    first = at_init[at_init.layer == 1].pivot_table(index="run", columns="name", values="value", observed=True)
    last = at_init[at_init.layer == at_init.depth].pivot_table(index="run", columns="name", values="value",
                                                               observed=True)
    ratios = (first / last).reindex(columns=["grad_norm", "delta_rms"])  # both, even for a run with no layers
    ratios = ratios.add_suffix("_ratio").rename_axis(columns=None).reset_index()
    return runs.merge(ratios, on="run", how="left")


LEARNED_LOSS = 0.5  # "learned": the mini-batch loss below this (chance is ln 10 = 2.3 on ten classes)


def add_learning_steps(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """learning_step: the first measured step whose mini-batch loss is below LEARNED_LOSS (Saxe et al. 2014's
    learning time); empty for a run that never gets there."""
    learned = metrics[(metrics.name == "batch_loss") & (metrics.value < LEARNED_LOSS)]
    return runs.assign(learning_step=runs.run.map(learned.groupby("run").step.min()))
