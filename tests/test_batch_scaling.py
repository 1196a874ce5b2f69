"""Figure 19, McCandlish et al.'s batch-size scaling: the steps to a target from the full training loss, the fit
S = S_min + E_min / B, the noise scale as a ratio of averages, and the figure on a real sweep over batch sizes."""

import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import catalog, figures_batch, report
from conftest import run_cli


def test_steps_to_a_target_interpolate_the_log_loss_between_evaluations():
    """A loss that falls as e^{-step / 10}, evaluated every 10 steps, reaches e^{-2.5} at step 25 exactly."""
    steps = np.arange(0, 60, 10)
    losses = pd.DataFrame({"step": steps, "value": np.exp(-steps / 10)})
    assert figures_batch.steps_to(losses, math.exp(-2.5)) == pytest.approx(25)
    assert figures_batch.steps_to(losses, 2.0) == 0 and math.isnan(figures_batch.steps_to(losses, 1e-9))


def synthetic_group(s_min: float, e_min: float, batches: list[int], lrs: list[float]) -> tuple:
    """Runs whose losses fall as e^{-step / tau}, tau chosen so that the best lr (the middle one) reaches e^{-1} at
    S_min + E_min / B and the others take twice as long; their noise rows hold tr(Sigma) = 4 and |G|^2 = 0.5 at every
    step (B_simple = 8)."""
    runs, losses, noise = [], [], []
    for run, (batch, lr) in enumerate([(b, lr) for b in batches for lr in lrs]):
        steps_needed = (s_min + e_min / batch) * (1 if lr == lrs[1] else 2)
        runs.append({"run": run, "batch_in_force": batch, "lr": lr})
        steps = np.arange(0, 4 * steps_needed, 0.5)
        losses.append(pd.DataFrame({"run": run, "step": steps, "value": np.exp(-steps / steps_needed)}))
        gsnr = 1 + batch * 0.5 / 4  # ||G||^2 = |G|^2 + tr(Sigma) / B
        noise.append(pd.DataFrame({"run": run, "step": np.repeat(steps[:10], 2), "value": np.tile([4.0, gsnr], 10),
                                   "name": np.tile(["grad_noise_trace", "gsnr"], 10)}))
    return pd.DataFrame(runs), pd.concat(losses), pd.concat(noise)


def test_the_fit_recovers_s_min_and_e_min_from_each_batch_sizes_best_learning_rate():
    runs, losses, noise = synthetic_group(40.0, 4000.0, [8, 32, 128, 512], [0.1, 0.3, 1.0])
    fit = figures_batch.scaling(runs, losses, noise, target=math.exp(-1))
    assert fit.steps.lr.tolist() == [0.3] * 4
    assert fit.steps.steps.tolist() == pytest.approx([40 + 4000 / b for b in (8, 32, 128, 512)], rel=1e-3)
    assert (fit.s_min, fit.e_min) == (pytest.approx(40, rel=1e-3), pytest.approx(4000, rel=1e-3))
    assert fit.b_simple == pytest.approx(8.0)
    assert figures_batch.scaling(runs[runs.batch_in_force < 32], losses, noise) is None  # fewer than 3 batch sizes


def test_figure_19_reads_a_real_sweep_over_batch_sizes_and_learning_rates(tmp_path: Path):
    result = run_cli("-m", "dataset=toy", "depth=2", "width=8", "epochs=4", "eval_every=2", "log_every=2",
                     "momentum=0", "batch_size=25,100,0", "lr=0.3,1.0", "jacobian.examples=0", "logger.mode=disabled",
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs, _, _ = report.analyse([tmp_path / "sweep"], progress=False)
    assert "19_batch_scaling" in [spec.name for spec in catalog.drawn_figures(inputs)]
    assert sorted(inputs.runs.batch_in_force) == [25, 25, 100, 100, 800, 800]  # 0: the toy set's 800 examples
    [(_, fit)] = figures_batch.group_scalings(inputs.runs, inputs.metrics, inputs.config_keys)
    assert fit.steps.batch.tolist() == [25, 100, 800]
    swept = {25: 25, 100: 100, 800: 0}  # batch_size as swept, by the batch in force
    for row in fit.steps.itertuples():  # the steps of the record's own train_loss rows, each evaluation a step
        keys = (f"_batch_size={swept[int(row.batch)]},", f",lr={row.lr},")
        job = next(path for path in (tmp_path / "sweep").glob("*_*") if all(key in path.name for key in keys))
        record = pd.read_parquet(job / "metrics.parquet").query("name == 'train_loss'").sort_values("step")
        assert row.steps == pytest.approx(figures_batch.steps_to(record, fit.target))
    fig = catalog.figure_19(inputs)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    plt.close("all")
