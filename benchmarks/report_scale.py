"""Goal 4, the analysis keeps up: `python benchmarks/report_scale.py [--runs N | --tiny]`.

Times `python analysis/report.py` over N runs (default 10,000) as a user runs it, a whole process, and reads its
peak memory (the child's own ru_maxrss, from os.wait4). Nothing is trained for the N runs: they are copies of one
small real sweep's job folders, each with a seed of its own, so the report reads them as seeds of the sweep's
configurations. A copy rewrites what tells runs apart (the seed in .hydra/config.yaml, .hydra/overrides.yaml and
summary.json, the job's folder name and summary job_name) and hard-links the Parquet records (the report only reads
them), so 10,000 runs take seconds and little disk. `measure()` is what benchmarks/run.py calls.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
BASE_SWEEP = ["activation=sigmoid,tanh,relu", "depth=2,10,30", "init=xavier_uniform,kaiming_normal,orthogonal"]
TINY_SWEEP = ["activation=tanh,relu", "depth=2,3", "epochs=1", "jacobian.examples=2"]
RUNS, TINY_RUNS = 10_000, 20
SEED_LINE = re.compile(r"^seed: .*$", re.MULTILINE)  # the top-level key: nested keys are indented
RECORDS = ("metrics.parquet", "jacobian.parquet")  # a file, or a folder of parts when the job was killed


def train_base(sweep_dir: Path, overrides: list[str]) -> Path:
    """A real sweep of the overrides into sweep_dir (W&B off); one already there is reused."""
    if not any(sweep_dir.glob("*/summary.json")):
        command = [sys.executable, str(REPO / "src" / "run.py"), "-m", *overrides, "logger.mode=disabled",
                   f"hydra.sweep.dir={sweep_dir}"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return sweep_dir


def base_jobs(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders that finished with a record, in job order."""
    jobs = [job for job in sweep_dir.iterdir() if (job / "summary.json").exists() and (job / ".hydra").is_dir()]
    if not jobs:
        raise FileNotFoundError(f"no job folder with a summary.json and .hydra/ in {sweep_dir}")

    def number(job: Path) -> int:
        prefix = job.name.split("_")[0]
        return int(prefix) if prefix.isdigit() else -1

    return sorted(jobs, key=lambda job: (number(job), job.name))


def job_seeds(job: Path) -> range:
    """The seeds a job trained: seed .. seed + replicas - 1."""
    config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    return range(config.get("seed") or 0, (config.get("seed") or 0) + (config.get("replicas") or 1))


def copy_name(number: int, job: Path, seed: int) -> str:
    """Hydra's folder name for the job's overrides with seed=seed: number_key=value,... sorted by key."""
    overrides = job.name.split("_", 1)[1] if "_" in job.name else ""
    kept = [part for part in overrides.split(",") if part and not part.startswith("seed=")]
    return f"{number}_" + ",".join(sorted([*kept, f"seed={seed}"]))


def link_record(source: Path, target: Path) -> None:
    """A hard link to a record file, or to every part of a record folder (a copy where links are not allowed)."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=link_or_copy)
    elif source.exists():
        link_or_copy(source, target)


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def copy_job(job: Path, target: Path, seed: int) -> None:
    """The job's folder at target, its seed set to seed everywhere the record names it."""
    (target / ".hydra").mkdir(parents=True)
    config = (job / ".hydra" / "config.yaml").read_text()
    (target / ".hydra" / "config.yaml").write_text(SEED_LINE.sub(f"seed: {seed}", config, count=1))
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    overrides = [o for o in overrides if not o.startswith("seed=")] + [f"seed={seed}"]
    (target / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = json.loads((job / "summary.json").read_text())
    summary.update(seed=seed, job_name=target.name.split("_", 1)[1])
    (target / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for name in RECORDS:
        link_record(job / name, target / name)


def copy_sweep(base: Path, sweep_dir: Path, n_runs: int, progress: bool = True) -> Path:
    """n_runs job folders in sweep_dir, copy i a copy of base job i mod k with the seeds of round i // k: seeds
    that no other copy of the same job has, so every copy is a new seed of its job's configuration."""
    jobs = base_jobs(base)
    seeds = [job_seeds(job) for job in jobs]
    stride = max(s.stop for s in seeds)  # round r's seeds are the job's own + r * stride: never an earlier round's
    sweep_dir.mkdir(parents=True)
    for number in tqdm(range(n_runs), desc="copying runs", unit="run", disable=not progress):
        rounds, index = divmod(number, len(jobs))
        seed = seeds[index].start + rounds * stride
        copy_job(jobs[index], sweep_dir / copy_name(number, jobs[index], seed), seed)
    return sweep_dir


def time_report(sweep_dir: Path, quiet: bool = False) -> dict[str, float]:
    """`python analysis/report.py sweep_dir` as a whole process: its wall seconds and its own peak RSS in MB."""
    output = subprocess.DEVNULL if quiet else None
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "analysis" / "report.py"), str(sweep_dir)],
                               cwd=REPO, stdout=output, stderr=output)
    _, status, usage = os.wait4(process.pid, 0)  # this child's rusage alone, not every child's so far
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args)
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024}  # Linux reports ru_maxrss in KiB


def measure(n_runs: int = RUNS, base: Path | None = None, workdir: Path | None = None, tiny: bool = False,
            quiet: bool = False) -> dict[str, float]:
    """Build n_runs copies of a real sweep (base, else one trained into workdir/base) and time the report over
    them: runs, copy_s, wall_s, peak_mb. A temporary workdir is removed afterwards, a given one kept."""
    temporary = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="report_scale_")) if temporary else Path(workdir)
    try:
        base = base or train_base(workdir / "base", TINY_SWEEP if tiny else BASE_SWEEP)
        sweep_dir = workdir / f"copies_{n_runs}"
        shutil.rmtree(sweep_dir, ignore_errors=True)
        started = time.perf_counter()
        copy_sweep(Path(base), sweep_dir, n_runs, progress=not quiet)
        copy_s = time.perf_counter() - started
        return {"runs": float(n_runs), "copy_s": copy_s, **time_report(sweep_dir, quiet)}
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help=f"runs to build (default {RUNS:,}; --tiny: {TINY_RUNS})")
    parser.add_argument("--tiny", action="store_true", help="a tiny base sweep (1 epoch, depths 2 and 3), 20 runs")
    parser.add_argument("--base", type=Path, help="copy this sweep's jobs instead of training one")
    parser.add_argument("--workdir", type=Path, help="keep the base sweep and the copies here (default: a temporary "
                                                     "folder, removed afterwards)")
    args = parser.parse_args(argv)
    n_runs = args.runs or (TINY_RUNS if args.tiny else RUNS)
    result = measure(n_runs, base=args.base, workdir=args.workdir, tiny=args.tiny)
    print(f"report over {n_runs:,} runs: {result['wall_s']:.1f} s wall, {result['peak_mb']:.0f} MB peak "
          f"(copies built in {result['copy_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
