"""What the gradient's noise rows (gradlab.per_example) add to a measured step: `python benchmarks/noise_rows.py`.

A measured step at the default size (depth 10, width 64, batch 100, the digits' 64 inputs, one thread): forward and
backward, the optimizer's step, every row of the step (train.step_rows) and their conversion to floats, with the noise
rows and without them (the same network, its measure told that its examples are coupled, as batch norm's are).
Blocks of 10 steps of each, interleaved, so that the machine's drift falls on both; the median of the ratios.
"""

import argparse
import copy
import statistics
import time

import torch

from gradlab.losses import LOSSES
from gradlab.measurement import block, concat, whole
from gradlab.mlp import MLP
from gradlab.optim import SGD
from gradlab.train import gradients, metric_name, score, step_rows


class WithoutNoise(MLP):
    examples_coupled = True  # stats.layer_stats then leaves the noise rows out, and nothing else


def rows_without_noise(net: MLP, loss, g, y, updates):
    """step_rows as the loop makes them, of the network without its noise rows."""
    scores = score(loss, g.trace.logits, y).mean(-1)
    return concat(net.measure(g.trace, g.back, g.grad_norms, updates),
                  block(whole("batch_loss", f"batch_{metric_name(y)}"), [g.batch_loss, scores]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100, help="interleaved blocks of 10 steps of each")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net = MLP([64, *[64] * 9, 10], "sigmoid", "xavier_uniform", seed=0)
    quiet = copy.copy(net)
    quiet.__class__ = WithoutNoise
    loss, gen = LOSSES["cross_entropy"], torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 64, generator=gen), torch.randint(0, 10, (100,), generator=gen)
    optimizer = SGD(net.parameters(), lr=0.1)

    def seconds(network: MLP, rows, steps: int = 10) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            g = gradients(network, loss, x, y)
            rows(network, loss, g, y, optimizer.updates(g.back.grads)).per_replica()
        return (time.perf_counter() - started) / steps

    for _ in range(3):  # warm-up
        seconds(net, step_rows), seconds(quiet, rows_without_noise)
    pairs = [(seconds(net, step_rows), seconds(quiet, rows_without_noise)) for _ in range(args.repeats)]
    ratios = sorted(with_noise / without for with_noise, without in pairs)
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"measured step with / without the noise rows: {statistics.median(ratios):.3f} (quartiles "
          f"{quartiles[0]:.3f}-{quartiles[2]:.3f}); {statistics.median(p[0] for p in pairs) * 1e3:.2f} ms with them, "
          f"{statistics.median(p[1] for p in pairs) * 1e3:.2f} ms without")


if __name__ == "__main__":
    main()
