"""gradlab benchmarks: `python benchmarks/run.py` prints a table and writes benchmarks/results.{csv,json}.

Every case runs in this one process, interleaved repetition by repetition so that machine noise
falls on both sides of each ratio; each ratio is the median over repetitions of the ratio measured
within one repetition. Whole processes (start-up, W&B's cost) are timed the same way, as a user runs them.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bptt  # benchmarks/bptt.py, contention.py and report_scale.py, beside this script
import contention
import report_scale
import torch
from torch import nn

from gradlab.losses import LOSSES
from gradlab.mlp import MLP
from gradlab.optim import SGD, apply
from gradlab.train import gradients, step_rows, step_updates

CE = LOSSES["cross_entropy"]
REPO = Path(__file__).resolve().parents[1]
SIZES = {  # name: (n_in, width, depth, batch, n_out)
    "small": (64, 64, 10, 100, 10),  # the default config on digits
    "large": (784, 1024, 10, 512, 10),
}
TINY = {"small": (8, 8, 3, 4, 3), "large": (16, 16, 3, 8, 3)}


def seconds_per_call(fn: Callable[[], object], min_seconds: float) -> float:
    """Mean wall time of fn over as many calls as fill min_seconds (at least 3), after one warm-up."""
    fn()
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


def batch(n_in: int, n_out: int, batch_size: int, replicas: int | None = None):
    gen = torch.Generator().manual_seed(0)
    lead = (replicas,) if replicas else ()
    x = torch.randn(*lead, batch_size, n_in, generator=gen)
    return x, torch.randint(0, n_out, (*lead, batch_size), generator=gen)


def autograd_twin(net: MLP) -> nn.Sequential:
    """The same network in torch.nn, with the same weights (nn.Linear keeps W transposed)."""
    layers: list[nn.Module] = []
    for l, (w, b) in enumerate(zip(net.weights, net.biases, strict=True), start=1):
        linear = nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(w.T)
            linear.bias.copy_(b)
        layers += [linear] + ([nn.Sigmoid()] if l < net.depth else [])
    return nn.Sequential(*layers)


def fwd_bwd_cases(size: tuple[int, ...]) -> dict[str, Callable[[], object]]:
    n_in, width, depth, batch_size, n_out = size
    net = MLP([n_in, *[width] * (depth - 1), n_out], activation="sigmoid")
    twin = autograd_twin(net)
    x, y = batch(n_in, n_out, batch_size)

    def manual():  # as train.gradients takes a step
        losses, dlogits = CE.value_and_grad(net.forward(x), y)
        losses.mean()
        return net.backward(dlogits / batch_size)

    def autograd():
        twin.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(twin(x), y).backward()

    return {"manual": manual, "autograd": autograd}


def training_steps(size: tuple[int, ...], log_every: int | None, replicas: int | None = None, steps: int = 10):
    """`steps` training steps, measuring every log_every-th (None: never); what train() does per step."""
    n_in, width, depth, batch_size, n_out = size
    net = MLP([n_in, *[width] * (depth - 1), n_out], activation="sigmoid", replicas=replicas or 1)
    optimizer = SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x, y = batch(n_in, n_out, batch_size, replicas)

    def run():
        for step in range(steps):
            g = gradients(net, CE, x, y)
            bool(torch.isfinite(g.batch_loss + g.norm).all())  # the divergence check every step makes
            updates = step_updates(optimizer, g, None)
            if log_every and step % log_every == 0:
                step_rows(net, CE, g, y, updates).per_replica()
            apply(optimizer, updates)

    return run


def matmul_floor(size: tuple[int, ...]) -> Callable[[], object]:
    """Only the matrix products of one training step, on tensors of the same shapes."""
    n_in, width, depth, batch_size, n_out = size
    sizes = [n_in, *[width] * (depth - 1), n_out]
    ws = [torch.randn(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    hs = [torch.randn(batch_size, a) for a in sizes[:-1]]
    dzs = [torch.randn(batch_size, b) for b in sizes[1:]]

    def run():
        for l, (w, h, dz) in enumerate(zip(ws, hs, dzs, strict=True)):
            h @ w  # forward
            h.T @ dz  # dW
            if l > 0:
                dz @ w.T  # dh for the layer below
    return run


def job(replicas: int, run_dir: Path) -> Callable[[], object]:
    """One whole `python src/run.py` job with the default config (W&B off), as a user runs it."""
    command = [sys.executable, str(REPO / "src" / "run.py"), f"replicas={replicas}", "logger.mode=disabled",
               f"hydra.run.dir={run_dir / f'replicas_{replicas}'}"]
    return lambda: subprocess.run(command, cwd=REPO, check=True, capture_output=True)


def cases(sizes: dict[str, tuple[int, ...]], replicas: int) -> dict[str, Callable[[], object]]:
    small, large = sizes["small"], sizes["large"]
    found = {}
    for name, size in (("small", small), ("large", large)):
        for impl, fn in fwd_bwd_cases(size).items():
            found[f"fwd_bwd {name} {impl}"] = fn
    found["steps small unmeasured"] = training_steps(small, None)
    found["steps small log_every=1"] = training_steps(small, 1)
    found["steps small log_every=5"] = training_steps(small, 5)
    found["steps large unmeasured"] = training_steps(large, None, steps=2)
    found["steps large log_every=1"] = training_steps(large, 1, steps=2)
    found["step large"] = training_steps(large, None, steps=1)
    found["step large matmuls only"] = matmul_floor(large)
    found[f"steps small replicas={replicas}"] = training_steps(small, 5, replicas=replicas)
    return found


RATIOS = [  # (measure, numerator, denominator, offset, goal)
    ("fwd+bwd manual / autograd, small", "fwd_bwd small manual", "fwd_bwd small autograd", 0, 0.75),  # issue 11,
    ("fwd+bwd manual / autograd, large", "fwd_bwd large manual", "fwd_bwd large autograd", 0, 1.00),  # goal 5
    ("measurement overhead, log_every=1", "steps small log_every=1", "steps small unmeasured", -1, 0.10),
    ("measurement overhead, log_every=5 (default)", "steps small log_every=5", "steps small unmeasured", -1, 0.02),
    ("measurement overhead, log_every=1, large", "steps large log_every=1", "steps large unmeasured", -1, 0.10),
    ("large step / its matmuls alone", "step large", "step large matmuls only", 0, 1.30),
]


def process_cases(tiny: bool, out: Path) -> dict[str, list[str]]:
    """Whole commands: `import torch`, the default run and the demo sweep, with W&B offline and disabled.
    Tiny: a 3-layer net for one epoch, and a sweep of two such jobs."""
    run = [sys.executable, str(REPO / "src" / "run.py")]
    single = ["depth=3", "epochs=1"] if tiny else []
    sweep = ["-m", "depth=2,3", "epochs=1"] if tiny else ["-m", "depth=2,10,30"]  # the demo sweep (`make demo`)
    cases = {"import torch": [sys.executable, "-c", "import torch"]}
    for mode in ("offline", "disabled"):
        cases[f"run {mode}"] = [*run, *single, f"logger.mode={mode}", f"hydra.run.dir={out / f'run_{mode}'}"]
        cases[f"sweep {mode}"] = [*run, *sweep, f"logger.mode={mode}", f"hydra.sweep.dir={out / f'sweep_{mode}'}"]
    return cases


Commands = Callable[[Path], dict[str, list[str]]]  # an output folder -> name -> command line


def time_commands(make_cases: Commands, repeats: int, label: str) -> dict[str, list[float]]:
    """Wall time of each whole command, interleaved repetition by repetition; beside each run or sweep, the sum of
    its jobs' own wall_seconds (their summary.json files)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | {"WANDB_SILENT": "true"}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for name, command in make_cases(Path(tmp) / str(rep)).items():
                started = time.perf_counter()
                subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
                times.setdefault(name, []).append(time.perf_counter() - started)
                outputs = ("hydra.run.dir=", "hydra.sweep.dir=")
                for folder in [arg.split("=", 1)[1] for arg in command if arg.startswith(outputs)]:  # none: no run
                    summaries = Path(folder).glob("**/summary.json")  # the run's, or each job's
                    times.setdefault(f"{name} wall_seconds", []).append(
                        sum(json.loads(path.read_text())["wall_seconds"] for path in summaries))
            print(f"{label} repetition {rep + 1}/{repeats} done", file=sys.stderr, flush=True)
    return times


PROCESS_RATIOS = [  # (measure, numerator, denominator, offset, goal): goals 1 and 2 of "Time to result"
    ("start-up: default run (W&B offline) / import torch", "run offline", "import torch", 0, 1.6),
    ("W&B offline overhead, default job's wall_seconds", "run offline wall_seconds", "run disabled wall_seconds",
     -1, 0.10),
    ("W&B offline overhead, default job, whole process", "run offline", "run disabled", -1, 0.10),
    ("W&B offline overhead, demo sweep, whole process", "sweep offline", "sweep disabled", -1, 0.10),
]


RNN_ADDING = ["net=rnn", "dataset=adding", "activation=tanh", "dataset.n_train=2000", "optimizer=adam", "lr=0.001",
              "clip_grad_norm=1"]  # a vanilla RNN that trains (le2015_irnn's settings), batch 100
REPLICA_RUNS = {  # goal 3: size -> (seeds, overrides); tiny: a few seeds of a small net for one epoch
    False: {"default size": (8, []), "depth 30": (24, ["depth=30", "epochs=5"]),
            "rnn T50": (8, [*RNN_ADDING, "dataset.seq_len=50", "epochs=3"])},
    True: {"default size": (2, ["depth=3", "epochs=1"]), "depth 30": (3, ["depth=4", "epochs=1"]),
           "rnn T50": (2, [*RNN_ADDING, "dataset.seq_len=5", "epochs=1"])},
}


def replica_cases(tiny: bool, out: Path) -> dict[str, list[str]]:
    """Goal 3's whole commands, W&B disabled: R seeds trained as one replicas=R run, and as a sweep of R jobs
    (`-m seed=0,...,R-1`: Hydra's basic launcher runs them one after another in one process)."""
    run = [sys.executable, str(REPO / "src" / "run.py")]
    found = {}
    for size, (seeds, overrides) in REPLICA_RUNS[tiny].items():
        folder, settings = size.replace(" ", "_"), [*overrides, "logger.mode=disabled"]
        found[f"replicas {size}"] = [*run, *settings, f"replicas={seeds}",
                                     f"hydra.run.dir={out / f'replicas_{folder}'}"]
        found[f"sweep {size}"] = [*run, "-m", *settings, f"seed={','.join(map(str, range(seeds)))}",
                                  f"hydra.sweep.dir={out / f'sweep_{folder}'}"]
    return found


def replica_ratios() -> list[tuple[str, str, str, int, float]]:
    """Goal 3: one replicas=R run / the sweep of the same R seeds, whole process and the jobs' own wall_seconds."""
    ratios = []
    for size, goal in (("default size", 1 / 3), ("depth 30", 1 / 1.5), ("rnn T50", 1 / 1.5)):
        seeds = REPLICA_RUNS[False][size][0]  # named as at full size, like the process measures
        for part, suffix in (("whole process", ""), ("wall_seconds", " wall_seconds")):
            ratios.append((f"replicas={seeds} / {seeds} jobs of a sweep, {size}, {part}", f"replicas {size}{suffix}",
                           f"sweep {size}{suffix}", 0, round(goal, 3)))
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repetitions (median taken)")
    parser.add_argument("--min-seconds", type=float, default=0.3, help="time per case per repetition")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--job-repeats", type=int, default=3, help="whole-job timings per replica count; 0: none")
    parser.add_argument("--process-repeats", type=int, help="start-up and W&B timings (default 7, tiny 1); 0: none")
    parser.add_argument("--sweep-repeats", type=int, help="replicas=R against a sweep of R seeds (default 3, tiny 1); "
                        "0: none")
    parser.add_argument("--contention-repeats", type=int, help="the demo sweep alone and beside a busy process "
                        "(default 5, tiny 1); 0: none")
    parser.add_argument("--report-runs", type=int, help=f"runs for the report's scale (default "
                        f"{report_scale.RUNS:,}, tiny {report_scale.TINY_RUNS}); 0: none")
    parser.add_argument("--report-base", type=Path, help="the sweep the report's runs are copied from (default: "
                        "train one, about 5 minutes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else SIZES
    found = {**cases(sizes, args.replicas), **bptt.cases(bptt.TINY if args.tiny else bptt.SIZES)}
    times: dict[str, list[float]] = {name: [] for name in found}
    for rep in range(args.repeats):
        for name, fn in found.items():
            times[name].append(seconds_per_call(fn, args.min_seconds))
        print(f"repetition {rep + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    ratios = RATIOS + bptt.RATIOS + [(f"replicas={args.replicas} / replicas=1, training steps",
                        f"steps small replicas={args.replicas}", "steps small log_every=5", 0, 2.5)]
    if args.job_repeats:
        times.update(time_jobs(args.replicas, args.job_repeats))
        ratios.append((f"replicas={args.replicas} / replicas=1, whole job", f"job replicas={args.replicas}",
                       "job replicas=1", 0, 2.5))
    process_repeats = args.process_repeats if args.process_repeats is not None else 1 if args.tiny else 7
    if process_repeats:
        times.update(time_commands(lambda out: process_cases(args.tiny, out), process_repeats, "process"))
        ratios += PROCESS_RATIOS
    sweep_repeats = args.sweep_repeats if args.sweep_repeats is not None else 1 if args.tiny else 3
    if sweep_repeats:
        times.update(time_commands(lambda out: replica_cases(args.tiny, out), sweep_repeats, "replicas-vs-sweep"))
        ratios += replica_ratios()
    contention_repeats = args.contention_repeats if args.contention_repeats is not None else 1 if args.tiny else 5
    if contention_repeats:
        times.update(contention.measure(contention_repeats, args.tiny))
        ratios.append(contention.RATIO)
    results = []
    for measure, num, den, offset, goal in ratios:
        value = statistics.median(a / b for a, b in zip(times[num], times[den], strict=True)) + offset
        results.append({"measure": measure, "value": round(value, 4), "goal": "none" if goal is None else f"<= {goal}",
                        "met": None if goal is None else value <= goal,
                        "numerator_ms": round(1e3 * statistics.median(times[num]), 4),
                        "denominator_ms": round(1e3 * statistics.median(times[den]), 4)})
    report_runs = args.report_runs
    if report_runs is None:
        report_runs = report_scale.TINY_RUNS if args.tiny else report_scale.RUNS
    if report_runs:
        scale = report_scale.measure(report_runs, base=args.report_base, tiny=args.tiny, quiet=True)
        results += report_scale_rows(scale)
    report(results, times, args, sizes)
    return 0


def report_scale_rows(scale: dict[str, float]) -> list[dict]:
    """Goal 4 in absolute units, one measurement: the report's wall seconds and peak memory over N copied runs
    (benchmarks/report_scale.py); these rows have no numerator and denominator."""
    runs = f"{int(scale['runs']):,}"
    rows = [(f"report over {runs} runs, wall seconds", scale["wall_s"], 60),
            (f"report over {runs} runs, peak memory GB", scale["peak_mb"] / 1024, 2)]
    return [{"measure": measure, "value": round(value, 4), "goal": f"<= {goal}", "met": value <= goal,
             "numerator_ms": None, "denominator_ms": None} for measure, value, goal in rows]


def time_jobs(replicas: int, repeats: int) -> dict[str, list[float]]:
    """Wall time of whole jobs, replicas=1 and replicas=R alternating."""
    times: dict[str, list[float]] = {"job replicas=1": [], f"job replicas={replicas}": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for r in (1, replicas):
                started = time.perf_counter()
                job(r, Path(tmp))()
                times[f"job replicas={r}"].append(time.perf_counter() - started)
            print(f"job repetition {rep + 1}/{repeats} done", file=sys.stderr, flush=True)
    return times


def report(results: list[dict], times: dict[str, list[float]], args: argparse.Namespace, sizes: dict) -> None:
    print(f"\n{'measure':<55} {'value':>8}  {'goal':>7}  met   ({'num ms':>9} / {'den ms':>9})")
    for r in results:
        parts = "" if r["numerator_ms"] is None else f"  ({r['numerator_ms']:>9.3f} / {r['denominator_ms']:>9.3f})"
        met = {None: "-", True: "yes", False: "NO"}[r["met"]]
        print(f"{r['measure']:<55} {r['value']:>8.3f}  {r['goal']:>7}  {met:<4}{parts}")
    for unit, batched, single in (("10 steps", f"steps small replicas={args.replicas}", "steps small log_every=5"),
                                  ("job", f"job replicas={args.replicas}", "job replicas=1")):
        if batched in times:
            batched_ms, single_ms = (1e3 * statistics.median(times[k]) for k in (batched, single))
            print(f"{args.replicas} seeds, per {unit}: one batched run {batched_ms:.1f} ms, "
                  f"{args.replicas} separate runs {args.replicas * single_ms:.1f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"sizes": sizes, "repeats": args.repeats, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "case_median_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()}}
    args.out.with_suffix(".json").write_text(json.dumps({"results": results, **meta}, indent=2) + "\n")
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    print(f"written: {args.out.with_suffix('.csv')} and .json")


if __name__ == "__main__":
    sys.exit(main())
