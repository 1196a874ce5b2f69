"""Upload offline W&B runs of sweeps: `python src/sync.py [SWEEP_DIR ...] [--dry-run]`."""

import argparse
import sys
from pathlib import Path

from gradlab.sweeps import find_sweeps, newest_sweep, sweep_running
from gradlab.sync import OfflineRun, find_offline_runs, preflight, server_url, sync_all


def state(run: OfflineRun) -> str:
    return "synced" if run.synced else "running" if run.running else "not synced"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep folders (default: the newest under runs/)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their sync state, sync none")
    parser.add_argument("--project", help="W&B project to sync into (default: the one each run was logged to)")
    parser.add_argument("--entity", help="W&B entity (user or team)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per run (default 300)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sweeps = args.sweeps or [newest_sweep(Path("runs"))]
    if None in sweeps:
        print("gradlab sync: no sweep under runs/; pass a sweep folder", file=sys.stderr)
        return 2
    missing = [str(s) for s in sweeps if not s.is_dir()]
    if missing:
        print(f"gradlab sync: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = find_offline_runs(sweeps)
    print(f"{len(runs)} offline W&B run(s) in {', '.join(map(str, sweeps))}")
    for sweep in filter(sweep_running, (found for root in sweeps for found in find_sweeps(root))):
        print(f"  {sweep} is still running: the runs of its jobs still training are not synced; sync again when it "
              "ends")
    for run in runs:
        print(f"  {state(run):10}  {run.path}")
    if args.dry_run or all(run.synced or run.running for run in runs):
        return 0
    problem = preflight(server_url())
    if problem:
        print(f"gradlab sync: {problem}", file=sys.stderr)
        return 1
    counts = sync_all(runs, args.project, args.entity, args.timeout)
    print(", ".join(f"{name}: {count}" for name, count in counts.items()))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
