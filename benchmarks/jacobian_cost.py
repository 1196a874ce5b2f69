"""What measuring the input-output Jacobian costs: `python benchmarks/jacobian_cost.py`.

Times one measurement (J of 16 examples and its singular values) at the default size and at depth 100,
width 256, then a 1-epoch job at depth 100, width 256 with jacobian.examples=16 against 0 (W&B off).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gradlab.jacobian import log_singular_values
from gradlab.mlp import MLP

REPO = Path(__file__).resolve().parents[1]


def one_measurement(depth: int, width: int, examples: int = 16, repeats: int = 5) -> float:
    """Best of `repeats` wall times of log_singular_values on a tanh net, in seconds."""
    net = MLP([64, *[width] * (depth - 1), 10], "tanh", "xavier_uniform")
    x = torch.randn(examples, 64, generator=torch.Generator().manual_seed(0))
    log_singular_values(net, x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        log_singular_values(net, x)
        times.append(time.perf_counter() - started)
    return min(times)


def job_seconds(examples: int, run_dir: Path) -> float:
    """wall_seconds of a 1-epoch job at depth 100, width 256."""
    subprocess.run([sys.executable, str(REPO / "src" / "run.py"), "depth=100", "width=256", "epochs=1",
                    "activation=tanh", f"jacobian.examples={examples}", "jacobian.every_epoch=true",
                    "logger.mode=disabled",
                    f"hydra.run.dir={run_dir}"], check=True, capture_output=True)
    return json.loads((run_dir / "summary.json").read_text())["wall_seconds"]


def main() -> None:
    for depth, width in ((10, 64), (100, 256)):
        seconds = one_measurement(depth, width)
        print(f"one measurement, depth {depth}, width {width}, 16 examples: {seconds * 1e3:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        with_j, without = job_seconds(16, Path(tmp) / "with"), job_seconds(0, Path(tmp) / "without")
    print(f"1-epoch job, depth 100, width 256: {without:.2f} s without J, {with_j:.2f} s with it "
          f"(+{100 * (with_j / without - 1):.0f}%: two measurements, at step 0 and the epoch's end)")


if __name__ == "__main__":
    main()
