"""Records: the rows of many jobs' metrics.parquet and jacobian.parquet that the report reads, in few scans.

A pyarrow dataset over CHUNK jobs' records at a time reads only the columns the figures use and, by a filter on name
and step, only their rows; each chunk is reduced at once (the per-layer profiles to their last complete step), so
memory follows what the figures draw, not how many runs or steps there are. A record is a file, or a folder of parts
when its job was killed (gradlab.record.PartedTable): each part is a fragment of the scan. Jobs are given as lists
of their record's files, in order, with their number of runs: rows come back with their run (the jobs' runs numbered
in order, replica r of a job its first run + r). A job whose record cannot be read is returned with why, by its
index, and the others are kept.

Profiled on 10,000 copied runs (benchmarks/report_scale.py), reading a pandas frame per run spent most of its time
and memory in per-file reads, merges of every row with its run's labels and string columns; one scan per chunk costs
about 1 ms a job, and the rows kept are a tenth of those recorded.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from analysis import needs
from gradlab.record import JACOBIAN_SCHEMA, METRICS_SCHEMA


def with_time(schema: pa.Schema) -> pa.Schema:
    """The metrics schema with its nullable time (the step within a sequence) after layer, where the writer's lacks
    it: a record from before time was written reads it as null, an MLP's row."""
    if "time" in schema.names:
        return schema
    return schema.insert(schema.get_field_index("layer") + 1, pa.field("time", pa.int64()))


READ_SCHEMA = with_time(METRICS_SCHEMA)

CHUNK = 250  # jobs per scan: a few thousand rows each, so a chunk's rows stay in the tens of MB
AT_STEP_0 = [*needs.AT_INIT, *needs.PROFILES]  # step 0: the profiles' start too
DEEPEST = [needs.GRAD_NORM, needs.UPDATE_RATIO, *needs.NOISE_ROWS]  # every step of the deepest runs
METRIC_COLUMNS = ["replica", "step", "epoch", "layer", "time", "name", "value"]
NAMES = list(dict.fromkeys([*AT_STEP_0, *needs.EVERY_STEP, needs.UPDATE_RATIO, *needs.NOISE_ROWS]))  # all read
SPECTRUM_COLUMNS = ["replica", "singular_value", "log_singular_value"]  # J's singular values at step 0: figure 10
ON_TIME_AXIS = pc.field("name").isin(needs.TIME_EVERY_STEP) & pc.field("time").is_valid()  # a sequence's steps
WHOLE = ~pc.field("layer").is_valid() & ~pc.field("time").is_valid()  # a whole-network row
OF_WHOLE_NETWORK = pc.field("name").isin(needs.NOISE_ROWS) & WHOLE
NEEDED = (pc.field("name").isin(needs.EVERY_STEP + needs.PROFILES)
          | ((pc.field("step") == 0) & pc.field("name").isin(AT_STEP_0)) | ON_TIME_AXIS | OF_WHOLE_NETWORK)  # fmt: skip
NEEDED_OF_DEEPEST = NEEDED | pc.field("name").isin(DEEPEST)


class Records(NamedTuple):
    metrics: pd.DataFrame  # run, step, epoch, layer, time, name (categories: NAMES), value: the rows read
    heatmap: pd.DataFrame  # group, layer, step: sum and count of usable log10 grad_norm, first_job: deepest jobs'
    unreadable: dict[int, str]  # job index: what is wrong with its metrics.parquet


class Spectra(NamedTuple):
    values: pd.DataFrame  # run, singular_value at step 0
    unreadable: dict[int, str]  # job index: what is wrong with its jacobian.parquet


def record_files(path: Path) -> list[str]:
    """The record's files: itself, its parts when it is a folder, none when it is missing; absolute paths, as the
    scan names its fragments."""
    path = Path(path).absolute()
    if path.is_dir():
        return [str(part) for part in sorted(path.glob("*.parquet"))]
    return [str(path)] if path.exists() else []


def batches(files: dict[int, list[str]], schema: pa.Schema, columns: list[str],
            condition: pc.Expression) -> Iterator[pa.RecordBatch]:
    """The rows of the files meeting the condition, as batches with their job's index prepended."""
    job_of = {path: job for job, paths in files.items() for path in paths}
    dataset = ds.dataset(list(job_of), schema=schema, format="parquet")
    for tagged in dataset.scanner(columns=columns, filter=condition).scan_batches():
        rows = tagged.record_batch
        job = pa.array(np.full(rows.num_rows, job_of[tagged.fragment.path], dtype=np.int32))
        yield pa.RecordBatch.from_arrays([job, *rows.columns], names=["job", *rows.schema.names])


def scan(files: dict[int, list[str]], schema: pa.Schema, columns: list[str],
         condition: pc.Expression) -> tuple[pa.Table, dict[int, str]]:
    """One scan of every job's files; where that fails (a truncated or foreign file), one per job to find which."""
    names = ["job", *columns]
    empty = pa.schema([("job", pa.int32()), *[schema.field(c) for c in columns]])
    try:
        return pa.Table.from_batches(list(batches(files, schema, columns, condition)), schema=empty), {}
    except (pa.ArrowException, OSError):
        pass
    tables, unreadable = [], {}
    for job, paths in files.items():
        try:
            tables.append(pa.Table.from_batches(list(batches({job: paths}, schema, columns, condition)), schema=empty))
        except (pa.ArrowException, OSError) as error:
            unreadable[job] = f"{type(error).__name__}: {error}"
    return pa.concat_tables(tables).select(names) if tables else empty.empty_table(), unreadable


def last_complete_rows(rows: pa.Table) -> pa.Table:
    """Per job, replica and name, the rows of the last step after 0 where every value is finite: the end of a
    profile, not the one layer a diverging run still had finite (figures_training.last_step_rows)."""
    if not rows.num_rows:
        return rows
    job, replica, step = (rows[c].to_numpy().astype(np.int64) for c in ("job", "replica", "step"))
    names = pc.index_in(rows["name"], pa.array(needs.PROFILES)).to_numpy(zero_copy_only=False)
    profile = (job * (replica.max() + 1) + replica) * len(needs.PROFILES) + names  # one number per job, replica, name
    width = int(step.max()) + 1
    cell = profile * width + step  # one number per profile and step
    finite = pc.fill_null(pc.is_finite(rows["value"]), False).to_numpy(zero_copy_only=False)
    complete = pd.Series(finite).groupby(cell, sort=False).all()
    cells = complete.index.to_numpy()[complete.to_numpy() & (complete.index.to_numpy() % width > 0)]
    last = pd.Series(cells % width).groupby(cells // width).max()
    return rows.filter(pa.array(step == last.reindex(profile).to_numpy()))


def heatmap_sums(grad_norm: pa.Table, group: np.ndarray) -> pd.DataFrame:
    """Per group of jobs (a configuration), layer and step: the sum and count of log10 grad_norm over its runs where
    grad_norm is positive and finite (figures_training.grad_norm_heatmap's mean), and the group's first job."""
    job = grad_norm["job"].to_numpy()
    value = grad_norm["value"].to_numpy(zero_copy_only=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        log10 = np.log10(np.where(value > 0, value, np.nan))
    usable = np.isfinite(log10)
    cells = pd.DataFrame({"group": group[job], "layer": grad_norm["layer"].to_numpy(zero_copy_only=False),
                          "step": grad_norm["step"].to_numpy(), "log10": np.where(usable, log10, 0.0),
                          "usable": usable.astype(np.int64), "job": job})
    return cells.groupby(["group", "layer", "step"], sort=False).agg(
        log10_sum=("log10", "sum"), usable=("usable", "sum"), first_job=("job", "min")).reset_index()


def reduce_chunk(rows: pa.Table, runs_per_job: np.ndarray, group: np.ndarray,
                 deepest_layers: list[int] | None, whole_noise: bool = True) -> tuple[pa.Table, pd.DataFrame]:
    """A chunk's scanned rows -> the rows the figures read, and the heatmap's sums; deepest_layers: the layers of
    update_ratio and the noise rows figures 8 and 18 draw when the chunk holds the deepest jobs, else None (and no
    heatmap sums). Rows of a replica the job did not train are dropped. A recurrent network's grad_norm per time
    step is kept at every step (figure 15): T rows per logged step of each such job. The whole network's noise rows
    are kept for the deepest jobs, and for the others where whole_noise (a sweep over batch sizes: figure 19)."""
    rows = rows.set_column(1, "replica", pc.fill_null(rows["replica"], 0))  # records from before replicas
    replica = rows["replica"].to_numpy()
    rows = rows.filter(pa.array((replica >= 0) & (replica < runs_per_job[rows["job"].to_numpy()])))
    name, step = rows["name"], rows["step"]
    at_init = pc.and_(pc.equal(step, 0), pc.is_in(name, pa.array(AT_STEP_0)))
    keep = pc.or_(pc.is_in(name, pa.array(needs.EVERY_STEP)), at_init)
    keep = pc.or_(keep, pc.and_(pc.is_in(name, pa.array(needs.TIME_EVERY_STEP)), pc.is_valid(rows["time"])))
    layers = pa.array(deepest_layers or [], pa.int64())
    keep = pc.or_(keep, pc.and_(pc.equal(name, needs.UPDATE_RATIO), pc.is_in(rows["layer"], layers)))
    whole = pc.and_(pc.is_null(rows["layer"]), pc.is_null(rows["time"]))
    noisy = pc.is_in(name, pa.array(needs.NOISE_ROWS))
    of_layers = pc.and_(pc.equal(name, needs.GRAD_NORM), pc.is_null(rows["time"]))  # not a sequence's time steps
    grad_norm = rows.filter(of_layers) if deepest_layers is not None else rows.slice(0, 0)
    profiles = last_complete_rows(rows.filter(pc.is_in(name, pa.array(needs.PROFILES))))
    drawn = pc.and_(noisy, pc.is_in(rows["layer"], layers))
    whole = whole if whole_noise or deepest_layers is not None else pc.and_(whole, False)
    noise = [noise_windows(rows.filter(pc.and_(noisy, whole)), WHOLE_WINDOWS).select(rows.column_names),
             noise_windows(rows.filter(drawn), LAYER_WINDOWS).select(rows.column_names)]
    return (pa.concat_tables([rows.filter(keep), profiles.select(rows.column_names), *noise]),
            heatmap_sums(grad_norm, group))


# windows of a run's steps for its noise rows, so that they are bounded however long it ran: the whole network's
# finely (figure 19 averages them up to the step a target is reached), the drawn layers' coarsely (figure 18)
WHOLE_WINDOWS, LAYER_WINDOWS = 256, 16


def noise_windows(rows: pa.Table, count: int) -> pa.Table:
    """The noise rows (needs.NOISE_ROWS: tr(Sigma) and the GSNR) of each job, replica and layer (null: the whole
    network) over `count` windows of as many measured steps each (the last may hold fewer), each at the window's last
    step: `grad_noise_trace` the mean
    tr(Sigma), `gsnr` the ratio of averages mean(gsnr tr(Sigma)) / mean(tr(Sigma)), i.e. B mean ||G||^2 / mean
    tr(Sigma) (McCandlish et al. average numerator and denominator apart). A window of one step keeps its values."""
    if not rows.num_rows:
        return rows
    frame = rows.select(["job", "replica", "step", "epoch", "layer", "name", "value"]).to_pandas()
    frame["layer"] = frame.layer.fillna(-1).astype(np.int64)  # groupby drops null keys
    keys = ["job", "replica", "layer", "step"]
    trace, gsnr = (frame[frame.name == name].drop(columns="name") for name in needs.NOISE_ROWS)
    wide = trace.merge(gsnr.drop(columns="epoch"), on=keys, suffixes=("_trace", "_gsnr")).dropna()
    wide = wide.sort_values(keys)
    runs = wide.groupby(["job", "replica", "layer"])
    per_window = np.ceil(runs.step.transform("size") / count)  # steps a window: all alike but the last one's
    wide = wide.assign(window=runs.cumcount() // per_window, signal=wide.value_gsnr * wide.value_trace)
    means = wide.groupby(["job", "replica", "layer", "window"]).agg(
        step=("step", "max"), epoch=("epoch", "max"), trace=("value_trace", "mean"), signal=("signal", "mean"))
    means = means.reset_index()
    long = pd.concat([means.assign(name=name, value=value) for name, value in
                      zip(needs.NOISE_ROWS, [means.trace, means.signal / means.trace], strict=True)])
    layer = long.layer.where(long.layer >= 0).astype("Int64")
    return pa.table({"job": pa.array(long.job, pa.int32()), "replica": pa.array(long.replica, pa.int64()),
                     "step": pa.array(long.step, pa.int64()), "epoch": pa.array(long.epoch, pa.int64()),
                     "layer": pa.array(layer, pa.int64()), "time": pa.nulls(len(long), pa.int64()),
                     "name": pa.array(long.name, pa.string()), "value": pa.array(long.value, pa.float64())})


def as_frame(rows: pa.Table, first_run: np.ndarray) -> pd.DataFrame:
    """Scanned rows as pandas in run and step order, each with its run (first_run[job] + replica) in place of its
    job and replica; a nullable layer becomes float (NaN for whole-network metrics), time pandas' Int64 (<NA> on the
    layer axis), names categories of NAMES."""
    run = first_run[rows["job"].to_numpy()] + rows["replica"].to_numpy()
    step = rows["step"].to_numpy()
    order = np.lexsort((step, run))
    names = pc.index_in(rows["name"], pa.array(NAMES)).to_numpy(zero_copy_only=False)
    time = pd.arrays.IntegerArray(pc.fill_null(rows["time"], 0).to_numpy()[order],
                                  pc.is_null(rows["time"]).to_numpy(zero_copy_only=False)[order])
    return pd.DataFrame({"run": run[order], "step": step[order], "epoch": rows["epoch"].to_numpy()[order],
                         "layer": rows["layer"].to_numpy(zero_copy_only=False).astype(float)[order], "time": time,
                         "name": pd.Categorical.from_codes(names[order], NAMES),
                         "value": rows["value"].to_numpy(zero_copy_only=False)[order]})


def read_metrics(files: list[list[str]], runs_per_job: list[int], group: list[int], deepest_layers: list[int],
                 advance: Callable[[int], object] = lambda n: None, whole_noise: bool = True) -> Records:
    """The rows the report reads from every job's metrics files, each with its run (the jobs' runs numbered in
    order): the NEEDED rows, each profile's last complete step and, for the deepest jobs (group >= 0: their
    configuration), update_ratio and the layers' noise rows at deepest_layers and the sums of the heatmap of
    grad_norm at every step."""
    runs, groups = np.asarray(runs_per_job, dtype=np.int64), np.asarray(group, dtype=np.int64)
    first_run = np.cumsum([0, *runs])
    metrics, heatmap, unreadable = [], [], {}
    for start in range(0, len(files), CHUNK):
        kept = []
        for of_deepest in (False, True):
            chunk = {job: files[job] for job in range(start, min(start + CHUNK, len(files)))
                     if (groups[job] >= 0) == of_deepest}
            if not chunk:
                continue
            rows, broken = scan(chunk, READ_SCHEMA, METRIC_COLUMNS, NEEDED_OF_DEEPEST if of_deepest else NEEDED)
            unreadable.update(broken)
            rows, sums = reduce_chunk(rows, runs, groups, deepest_layers if of_deepest else None, whole_noise)
            kept.append(rows)
            heatmap.append(sums)
        metrics.append(as_frame(pa.concat_tables(kept) if kept else empty_metrics(), first_run))
        advance(min(CHUNK, len(files) - start))
    if not heatmap:
        heatmap.append(reduce_chunk(empty_metrics(), runs, groups, None)[1])
    sums = pd.concat(heatmap, ignore_index=True).groupby(["group", "layer", "step"], sort=False).agg(
        log10_sum=("log10_sum", "sum"), usable=("usable", "sum"), first_job=("first_job", "min")).reset_index()
    return Records(pd.concat(metrics or [as_frame(empty_metrics(), first_run)], ignore_index=True), sums, unreadable)


def empty_metrics() -> pa.Table:
    return pa.schema([("job", pa.int32()), *[READ_SCHEMA.field(c) for c in METRIC_COLUMNS]]).empty_table()


def spectrum_values(rows: pa.Table) -> np.ndarray:
    """s, with a value too small for float64 (recorded as ln s only, e^{ln s} = 0) kept apart from an exact zero
    (ln s = -inf): as the smallest positive float64. Records made before ln s was recorded: s as it is."""
    values = rows["singular_value"].to_numpy(zero_copy_only=False).astype(float)
    logs = pc.fill_null(rows["log_singular_value"], np.nan).to_numpy(zero_copy_only=False).astype(float)
    underflowed = np.isfinite(logs) & (values == 0)
    return np.where(underflowed, np.nextafter(0.0, 1.0), values)


def read_spectra(files: list[list[str]], runs_per_job: list[int],
                 advance: Callable[[int], object] = lambda n: None) -> Spectra:
    """J's singular values at step 0 of every job that has a jacobian.parquet, each with its run (the jobs' runs
    numbered in order); converted chunk by chunk, as they are 10^3 a run."""
    runs = np.asarray(runs_per_job, dtype=np.int64)
    first_run = np.cumsum([0, *runs])
    run_chunks, value_chunks, unreadable = [], [], {}
    for start in range(0, len(files), CHUNK):
        chunk = {job: files[job] for job in range(start, min(start + CHUNK, len(files))) if files[job]}
        if chunk:
            rows, broken = scan(chunk, JACOBIAN_SCHEMA, SPECTRUM_COLUMNS, pc.field("step") == 0)
            job, replica = rows["job"].to_numpy(), pc.fill_null(rows["replica"], 0).to_numpy()
            trained = (replica >= 0) & (replica < runs[job])
            run_chunks.append((first_run[job] + replica)[trained].astype(np.int32))
            value_chunks.append(spectrum_values(rows)[trained])
            unreadable.update(broken)
        advance(min(CHUNK, len(files) - start))
    values = pd.DataFrame({"run": np.concatenate([np.zeros(0, np.int32), *run_chunks]),
                           "singular_value": np.concatenate([np.zeros(0), *value_chunks]).astype(float)})
    return Spectra(values, unreadable)
