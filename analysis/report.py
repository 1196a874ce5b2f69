"""Build the report of one or more sweeps: `python analysis/report.py [SWEEP_DIR ...]`.

Default: the newest sweep anywhere under runs/ (runs/multirun/<time>/, or a hydra.sweep.dir of your own).
Several sweep folders, or a parent of several, make one report, written into the first: report/index.html,
report/figures/*.png and report/runs.csv. The only module that writes files; load reads the runs and the figures
draw.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `analysis` from the repository, not its own folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import matplotlib

matplotlib.use("Agg")  # files only, no window, whatever the machine's display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from analysis.best_over import best_over_curves, best_over_section, best_rows  # noqa: E402
from analysis.catalog import FigureSpec, Inputs, drawn_figures  # noqa: E402
from analysis.chance import chance_loss  # noqa: E402
from analysis.families import layer_rows, layer_runs, time_rows, time_runs  # noqa: E402
from analysis.figures_init import ratio_rows  # noqa: E402
from analysis.isometry import AT_INIT, with_jacobian_at_init  # noqa: E402
from analysis.jobs import FACT_COLUMNS, REGRESSION_COLUMNS, SUMMARY_COLUMNS  # noqa: E402
from analysis.layout import panel_grid  # noqa: E402
from analysis.load import concat_rows, load, tqdm_disable  # noqa: E402
from analysis.needs import DELTA_RMS, STATE_GRAD_RMS  # noqa: E402
from analysis.page import page, time_findings_section  # noqa: E402
from analysis.predict import (  # noqa: E402
    depth_curves,
    findings,
    measured_bulk_ratios,
    predicted_bulk_ratio,
    predicted_profiles,
)
from analysis.predict_time import (  # noqa: E402
    TIME_COLUMNS,
    measured_step_factors,
    predicted_step_factor,
    predicted_time_profiles,
    time_findings,
    time_steps,
)
from analysis.trainability import agreement, trainability_rows  # noqa: E402
from gradlab.sweeps import find_sweeps, newest_sweep, sweep_running  # noqa: E402

RATIO_COLUMNS = ["grad_norm_ratio", "delta_rms_ratio", "bulk_ratio", "predicted_bulk_ratio", "learning_step",
                 "chance_loss", *AT_INIT.values()]
NOT_IN_CSV = ["input_q0_quantiles"]  # 16 numbers per run: the theory's input, in each summary.json
DPI = 100


def analyse(sweeps: list[Path], progress: bool | None = None) -> tuple[Inputs, pd.DataFrame, list[str]]:
    """Load the sweeps and add the theory: the figures' inputs, the findings table and the skipped jobs."""
    sweep = load(sweeps, progress=progress)
    layers = layer_rows(sweep.metrics, [DELTA_RMS])  # the theory's and the bulk ratio's rows (analysis.families)
    runs = sweep.runs.assign(bulk_ratio=measured_bulk_ratios(sweep.runs, layers))
    runs["predicted_bulk_ratio"] = [predicted_bulk_ratio(run) for run in runs.itertuples(index=False)]
    runs["chance_loss"] = [chance_loss(run) for run in runs.itertuples(index=False)]
    runs = with_jacobian_at_init(runs, sweep.metrics)
    runs = with_time_factors(runs, time_rows(sweep.metrics, [STATE_GRAD_RMS]))
    predicted = concat_rows(predicted_profiles(runs, layers),
                            predicted_time_profiles(runs, time_rows(sweep.metrics, [STATE_GRAD_RMS])))
    metrics = concat_rows(sweep.metrics, predicted)  # one copy of the measured rows, the largest frame
    by_layer = layer_runs(runs)
    inputs = Inputs(runs, metrics, ratio_rows(by_layer, depth_curves(by_layer)), sweep.config_keys, sweep.spectra,
                    trainability_rows(runs, sweep.config_keys), sweep.heatmap)
    return inputs, findings(by_layer, sweep.config_keys), sweep.skipped


def with_time_factors(runs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """runs with T (time_steps) and the measured and predicted per-step factors of state_grad_rms at init
    (analysis.predict_time), NaN for a run without time rows."""
    runs = runs.assign(time_steps=time_steps(runs, rows), step_factor=measured_step_factors(runs, rows))
    return runs.assign(predicted_step_factor=[predicted_step_factor(run) for run in runs.itertuples(index=False)])


def runs_csv_columns(config_keys: list[str], through_time: bool = False, regression: bool = False) -> list[str]:
    """runs.csv: the run, one column per config key (dotted: dataset.kind), the summary, facts (net, the family,
    first) and ratios, and where through_time (a sweep with recurrent runs) their facts and per-step factors, where
    regression (runs with numeric targets) their mean squared errors; a fact that is also a config key keeps the
    config's place."""
    facts = [c for c in FACT_COLUMNS if c not in NOT_IN_CSV]
    time = TIME_COLUMNS if through_time else []
    errors = REGRESSION_COLUMNS if regression else []
    return list(dict.fromkeys(["run", "job", "replica", *config_keys, *SUMMARY_COLUMNS, *errors, *facts,
                               *RATIO_COLUMNS, *time]))


def best_over_figure(rows: pd.DataFrame, key: str, by: str) -> FigureSpec:
    """Figure 13, for --best-over: `by` at the best `key` against depth."""
    def draw(inputs: Inputs) -> plt.Figure:
        fig, axes = panel_grid(1, 1, (0, 0))
        best_over_curves(rows, axes[0, 0], key, by)
        return fig

    return FigureSpec("13_best_over", f"13. {by} at the best {key}, against depth",
                      f"Each point is the configuration at the value of {key} (labelled) where its seeds' mean {by} is "
                      f"lowest; a triangle on the top edge: it never got there at any {key} tried.", draw)


def build(sweeps: list[Path], progress: bool | None = None, best_over: str | None = None,
          by: str = "learning_step") -> Path:
    """Write the report of the sweeps into the first one's report/ folder; returns the path of index.html. With
    best_over (a swept key), also the best over it by `by` (analysis/best_over.py): figure 13 and its table."""
    out = Path(sweeps[0]) / "report"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for stale in (out / "figures").glob("*.png"):
        stale.unlink()
    inputs, table, skipped = analyse(sweeps, progress)
    through_time = not time_runs(inputs.runs).empty
    figures = drawn_figures(inputs)
    extra = time_findings_section(time_findings(inputs.runs, inputs.config_keys)) if through_time else ""
    if best_over:
        rows = best_rows(inputs.runs, best_over, by, inputs.config_keys)
        figures.append(best_over_figure(rows, best_over, by))
        extra += best_over_section(rows, best_over, by)
    for spec in tqdm(figures, desc="drawing figures", unit="figure", disable=tqdm_disable(progress)):
        fig = spec.build(inputs)
        fig.suptitle(spec.title, fontsize="large", y=1 - 0.12 / fig.get_figheight(), va="top", wrap=True)
        fig.savefig(out / "figures" / f"{spec.name}.png", dpi=DPI)
        plt.close(fig)
    regression = bool(inputs.runs.final_test_mse.notna().any())
    inputs.runs[runs_csv_columns(inputs.config_keys, through_time, regression)].to_csv(out / "runs.csv", index=False)
    html = page([str(s) for s in sweeps], inputs.runs, skipped, table,
                [(spec.name, spec.title, spec.caption) for spec in figures], agreement(inputs.trainability), extra)
    (out / "index.html").write_text(html, encoding="utf-8")
    return out / "index.html"


def one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="*", type=Path,
                        help="sweep folders, or a parent of several (default: the newest sweep under runs/)")
    parser.add_argument("--best-over", metavar="KEY", help="a swept config key (lr): add the best over it (figure 13)")
    parser.add_argument("--by", default="learning_step", metavar="COLUMN",
                        help="the runs.csv column, lower is better, that --best-over minimizes (default learning_step)")
    args = parser.parse_args(argv)
    sweeps = args.sweeps or [newest_sweep(Path("runs"))]
    if None in sweeps:
        print("gradlab report: no sweep under runs/; run `python src/run.py -m ...` or pass a folder", file=sys.stderr)
        return 2
    missing = [str(s) for s in sweeps if not s.is_dir()]
    if missing:
        print(f"gradlab report: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    warnings.formatwarning = one_line_warning
    for sweep in filter(sweep_running, (found for root in sweeps for found in find_sweeps(root))):
        print(f"warning: {sweep} is still running: the report shows the jobs recorded so far", file=sys.stderr)
    torch.set_num_threads(1)  # the theory's tensors are small: more threads only wait on each other
    started = time.time()
    try:
        index = build(sweeps, best_over=args.best_over, by=args.by)
    except (FileNotFoundError, ValueError) as error:
        print(f"gradlab report: {error}", file=sys.stderr)
        return 2
    print(f"report built in {time.time() - started:.1f} s: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
