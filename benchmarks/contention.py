"""A busy machine: the demo sweep beside one CPU-bound process, against the same sweep alone.

`python benchmarks/contention.py [--repeats N]` prints the ratio; benchmarks/run.py adds it to its table. Each
repetition times the sweep once alone and once beside the busy process, one after the other, so that whatever
else the machine does falls on both; the ratio is the median of the per-repetition ratios.
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUSY = [sys.executable, "-c", "while True: pass"]  # one core's worth of someone else's work
GOAL = 1.5


@contextlib.contextmanager
def busy_process() -> Iterator[None]:
    hog = subprocess.Popen(BUSY)
    try:
        time.sleep(0.2)  # let it take its core
        yield
    finally:
        hog.kill()
        hog.wait()


def demo_sweep(out: Path, tiny: bool) -> list[str]:
    """`make demo`'s sweep (W&B offline, as a user runs it); tiny: two 1-epoch jobs."""
    sweep = ["depth=2,3", "epochs=1"] if tiny else ["depth=2,10,30"]
    return [sys.executable, str(REPO / "src" / "run.py"), "-m", *sweep, f"hydra.sweep.dir={out}"]


def seconds(command: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | {"WANDB_SILENT": "true"}
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def measure(repeats: int, tiny: bool = False) -> dict[str, list[float]]:
    """Seconds of the demo sweep alone and beside a busy process, interleaved repetition by repetition."""
    times: dict[str, list[float]] = {"demo sweep quiet": [], "demo sweep busy": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            times["demo sweep quiet"].append(seconds(demo_sweep(Path(tmp) / f"quiet_{rep}", tiny)))
            with busy_process():
                times["demo sweep busy"].append(seconds(demo_sweep(Path(tmp) / f"busy_{rep}", tiny)))
            print(f"contention repetition {rep + 1}/{repeats} done", file=sys.stderr, flush=True)
    return times


RATIO = ("demo sweep beside one busy process / alone", "demo sweep busy", "demo sweep quiet", 0, GOAL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="two 1-epoch jobs: checks that the script runs")
    args = parser.parse_args(argv)
    times = measure(args.repeats, args.tiny)
    ratio = statistics.median(b / q for b, q in zip(times["demo sweep busy"], times["demo sweep quiet"], strict=True))
    quiet, busy = (statistics.median(times[k]) for k in ("demo sweep quiet", "demo sweep busy"))
    print(f"demo sweep: alone {quiet:.2f} s, beside a busy process {busy:.2f} s (medians); ratio {ratio:.2f} "
          f"(goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
