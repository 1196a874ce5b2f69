"""Find the offline W&B runs below sweep folders and hand them to W&B's own `wandb sync`."""

import netrc
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

from gradlab.sweeps import recorded_status, sweep_running

CONNECT_TIMEOUT_S = 10


class OfflineRun(NamedTuple):
    path: Path  # a wandb/offline-run-* folder
    synced: bool  # `wandb sync` leaves run-<id>.wandb.synced beside the run file when it succeeds
    running: bool = False  # its job is still training in a sweep that still runs: the run is not whole yet


def still_running(job_dir: Path) -> bool:
    """A job whose record says running, in a sweep whose process still runs (a killed job's record says running
    too, but its sweep's process is gone)."""
    return recorded_status(job_dir) == "running" and sweep_running(job_dir.parent)


def find_offline_runs(roots: Iterable[Path]) -> list[OfflineRun]:
    paths = sorted({p for root in roots for p in Path(root).rglob("offline-run-*") if p.is_dir()})
    return [OfflineRun(p, any(p.glob("*.wandb.synced")), still_running(p.parents[1])) for p in paths]


def server_url() -> str:
    """The W&B server that `wandb sync` would talk to (WANDB_BASE_URL, else W&B's default)."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    import wandb

    return wandb.Settings().base_url


def has_credentials(url: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators(urlparse(url).hostname or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def preflight(url: str) -> str | None:
    """What stops a sync, as one line saying how to fix it; None when credentials and server are there."""
    if not has_credentials(url):
        return "no W&B credentials: run `wandb login` (or set WANDB_API_KEY), then sync again"
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return f"cannot reach the W&B server {url} ({reason}): connect to the network, then sync again"
    return None


def sync_run(run: Path, project: str | None, entity: str | None, timeout_s: float) -> bool:
    """`wandb sync` one offline run, bounded in time; True when W&B reports success."""
    command = [sys.executable, "-m", "wandb", "sync", str(run)]
    command += ["--project", project] if project else []
    command += ["--entity", entity] if entity else []
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    try:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def sync_all(
    runs: list[OfflineRun], project: str | None, entity: str | None, timeout_s: float
) -> Counter:
    """Sync the runs not yet synced, but those still being written; counts of synced, already synced, still running
    and failed."""
    counts: Counter = Counter({"synced": 0, "already synced": 0, "still running": 0, "failed": 0})
    for run in runs:
        if run.synced or run.running:
            counts["already synced" if run.synced else "still running"] += 1
            continue
        ok = sync_run(run.path, project, entity, timeout_s)
        counts["synced" if ok else "failed"] += 1
        print(f"  {'synced' if ok else 'FAILED'}  {run.path}", flush=True)
    return counts
