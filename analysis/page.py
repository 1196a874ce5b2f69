"""The report page as one HTML string: findings table, then each figure with its caption. Writes nothing."""

import html
import math
from collections.abc import Sequence

import pandas as pd

from analysis.isometry import (
    BAND,
    ISOMETRIC,
    ISOMETRIC_SHARE,
    NARROW,
    NARROW_SPREAD,
    SHARE_COLUMN,
    SPREAD,
    SPREAD_COLUMN,
    VERDICT_COLUMN,
)
from analysis.predict import NO_THEORY_FOR_NORMS, STABLE_BAND, THEORY_VERDICT, VERDICT
from analysis.predict_time import NO_THEORY_FOR_LSTM, PASCANU, STEP_BAND, TIME_THEORY_VERDICT, TIME_VERDICT
from analysis.trainability import DEPTH_SCALES, TRAINABLE_SHARE

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
.vanishing { background: #fde2e1; } .exploding { background: #fff1cc; } .stable { background: #e3f4e1; }
td.isometric { background: #cdebc8; } td.narrow { background: #fff1cc; } td.spread { background: #f8cfcc; }
figure { margin: 2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.95em; color: #444; max-width: 60em; } .pair { display: flex; gap: 1em; flex-wrap: wrap; }
.pair figure { flex: 1 1 600px; margin-top: 0; } code { background: #f5f5f5; padding: 0 0.2em; }
"""
JACOBIAN_TINTS = {ISOMETRIC: "isometric", NARROW: "narrow", SPREAD: "spread"}  # J verdict: its cell's class
PAIRS = {("1", "2"), ("7a", "7b"), ("9a", "9b"), ("11a", "11b")}  # side by side, by the names' numbers


def number(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3g}"
    return html.escape(str(value))


def cell(column: str, value: object) -> str:
    """A findings cell: names (activation, dataset.kind, verdict) left-aligned, numbers and accuracies right; J's
    verdict tinted by itself (the row is tinted by the delta_rms verdict)."""
    if isinstance(value, str) and not column.startswith("accuracy"):
        tint = f" {JACOBIAN_TINTS[value]}" if column == VERDICT_COLUMN and value in JACOBIAN_TINTS else ""
        return f'<td class="text{tint}">{number(value)}</td>'
    return f"<td>{number(value)}</td>"


def findings_table(table: pd.DataFrame, verdict: str = VERDICT) -> str:
    """The findings as an HTML table, each row tinted by its measured verdict (the column `verdict`)."""
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for record in table.to_dict("records"):
        cells = "".join(cell(column, value) for column, value in record.items())
        rows.append(f'<tr class="{html.escape(str(record.get(verdict, "")))}">{cells}</tr>')
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def figure_block(name: str, title: str, caption: str) -> str:
    title = html.escape(title)
    return (f'<figure id="{name}"><h3>{title}</h3><a href="figures/{name}.png"><img src="figures/{name}.png" '
            f'alt="{title}"></a><figcaption>{html.escape(caption)}</figcaption></figure>')


def how_far(run: tuple) -> str:
    if run.status == "diverged" and pd.notna(run.diverged_at_step):
        return f"diverged at step {int(run.diverged_at_step)}"
    return f"{run.status} after {int(run.steps) if pd.notna(run.steps) else 0} steps"


def unfinished_runs(runs: pd.DataFrame) -> str:
    """A folded list of the runs that did not complete: diverged (and where), interrupted, failed, running."""
    rows = runs[runs.status != "completed"]
    if rows.empty:
        return ""
    items = "".join(f"<li><code>{html.escape(run.job)}</code>: {how_far(run)}</li>"
                    for run in rows.itertuples(index=False))
    return f"<details><summary>Runs that did not complete ({len(rows)})</summary><ul>{items}</ul></details>"


def trainability_section(agreement: pd.DataFrame | None) -> str:
    """How many cells of each trainability map fall on the side of 6 xi_c the theory predicts; '' without a map."""
    if agreement is None or agreement.empty:
        return ""
    return f"""<h3>Trainability against the theory (figure 12)</h3>
<p>Each (sigma_w^2, depth) cell of a sweep is <b>trainable</b> when its test accuracy (mean over seeds that did
not diverge) is above the <b>threshold</b>: chance plus {TRAINABLE_SHARE:.0%} of the way from chance to the best
cell of its panel; a cell whose every seed diverged is not. It is <b>predicted trainable</b> when its depth is below
{DEPTH_SCALES} xi_c, the correlation depth scale of mean-field theory at its sigma_w^2 and sigma_b^2 (Schoenholz
et al. 2017); <b>compared</b> leaves out the cells where xi_c does not exist (the length grows without bound).
<b>edge of chaos</b>: the sigma_w^2 where chi_1 = 1 (blank where there is none).</p>
{findings_table(agreement)}"""


def findings_section(table: pd.DataFrame) -> str:
    """The findings: what each column means, the verdicts' rules, and the table; '' where no run is drawn by layer."""
    if table.empty:
        return ""
    band = f"{1 / STABLE_BAND:.2f}"
    return f"""<h2>Findings</h2>
<p><b>measured</b>: the per-layer ratio r = delta_rms(l) / delta_rms(l+1) of the back-propagated signal at
initialization, from a straight-line fit of log10 delta_rms against layer over the bulk layers (leaving out the
first and last few), at the deepest depth swept (<b>depth</b>), geometric mean over seeds. <b>predicted</b>: the
same fit of the mean-field profile, whose per-layer ratio is sqrt(chi) (Poole et al. 2016; Schoenholz et al.
2017), or sqrt(1 + alpha^2 chi) per block of a residual network (<code>arch=residual</code>, alpha =
<code>residual_scale</code>; Yang and Schoenholz 2017), for the layer sizes each run recorded, averaged over the
lengths of its training inputs (also recorded); blank for a run recorded before these facts were, and blank for
a network with a norm layer: {NO_THEORY_FOR_NORMS}.
<b>{VERDICT}</b> (from measured) and <b>{THEORY_VERDICT}</b> (from predicted) are about the size of the
back-propagated signal delta_rms only: vanishing when r &lt; {band} (the signal falls by more than 10x every 10
layers), exploding when r &gt; {STABLE_BAND:.2f}, stable in between. A stable delta_rms says nothing of how the
input-output Jacobian J spreads the directions of a signal; that is what the J columns say, where the runs measured
J (<code>jacobian.examples</code> &gt; 0), at init and at the same depth, mean over seeds: <b>{SHARE_COLUMN}</b>,
the share of J's singular values s within a factor 2 of 1, <b>{SPREAD_COLUMN}</b>, the standard deviation of ln s,
and <b>{VERDICT_COLUMN}</b>: <i>{ISOMETRIC}</i> when at least {ISOMETRIC_SHARE:.0%} of the singular values lie
in {BAND} (dynamical isometry: Saxe et al. 2014; Pennington et al. 2017); otherwise <i>{NARROW}</i> when the std of
ln s is below {NARROW_SPREAD:g} (J scales every direction alike, by a gain away from 1) and <i>{SPREAD}</i> when it
is not (J amplifies some directions and crushes others).
Accuracy: final test accuracy, mean over seeds, diverged runs counted out.</p>
{findings_table(table)}"""


def time_findings_section(table: pd.DataFrame) -> str:
    """The findings of recurrent runs: what each column means, the verdicts' rules, and the table."""
    return f"""<h2>Findings through time (recurrent networks)</h2>
<p><b>measured</b>: the per-step factor r = state_grad_rms(t) / state_grad_rms(t+1) of the back-propagated state
dL/dh_t at initialization, the geometric mean over the bulk time steps (leaving out the first and last few, as for
layers) of a sequence of <b>T</b> steps read out at T, geometric mean over seeds. <b>predicted</b>: the same mean of
the mean-field profile of a vanilla cell, whose per-step factor is sqrt(sigma_w^2 E[phi'(a_t)^2]) at the
pre-activation length q_t = sigma_w^2 E[phi(h_(t-1))^2] + sigma_u^2 q_x (gradlab.theory_rnn), from the sigma_w^2,
sigma_u^2 and input mean square q_x each run recorded; {NO_THEORY_FOR_LSTM}. <b>{TIME_VERDICT}</b> and
<b>{TIME_THEORY_VERDICT}</b>: vanishing when r &lt; {1 / STEP_BAND:.2f} per step, exploding when r &gt; {STEP_BAND:g},
stable in between (per step: over T = 64 steps, 0.9 a step is a factor 1000). <b>{PASCANU}</b> (2013): where the
recurrent weights' spectral radius rho (the first seed's) is below 1 / max|phi'| (1 for tanh and ReLU, 4 for
sigmoid), the gradient vanishes for an orthogonal or identity W, whose largest singular value is rho; for another W
(Gaussian: about 2 rho) it is likely, not certain; above it, nothing is ruled out. Accuracy: final test accuracy,
mean over seeds, diverged runs counted out.</p>
{findings_table(table, TIME_VERDICT)}"""


def page(sources: Sequence[str], runs: pd.DataFrame, skipped: Sequence[str], table: pd.DataFrame,
         figures: Sequence[tuple[str, str, str]], agreement: pd.DataFrame | None = None, extra: str = "") -> str:
    """The whole page; figures are (name, title, caption), side by side in PAIRS (1|2, 7a|7b, 9a|9b, 11a|11b), and
    the trainability agreement (trainability.agreement) under the findings when a sweep has a grid; `extra`, a
    section of HTML placed after them (--best-over's table)."""
    statuses = ", ".join(f"{count} {status}" for status, count in runs.status.value_counts().items())
    skipped_html = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in skipped)
    blocks, index = [], 0
    while index < len(figures):
        number = figures[index][0].split("_")[0]
        pair = index + 1 < len(figures) and (number, figures[index + 1][0].split("_")[0]) in PAIRS
        if pair:
            blocks.append(f'<div class="pair">{figure_block(*figures[index])}{figure_block(*figures[index + 1])}</div>')
            index += 2
        else:
            blocks.append(figure_block(*figures[index]))
            index += 1
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gradlab report</title><style>{STYLE}</style></head><body>
<h1>Vanishing and exploding gradients: report</h1>
<p>{len(runs)} runs ({statuses}) from {", ".join(f"<code>{html.escape(s)}</code>" for s in sources)}.
Every run's config, status and final metrics: <a href="runs.csv">runs.csv</a>.</p>
{unfinished_runs(runs)}
{f"<p>Skipped (unreadable record):</p><ul>{skipped_html}</ul>" if skipped else ""}
{findings_section(table)}
{trainability_section(agreement)}
{extra}
<h2>Figures</h2>
<p>Colors: one per activation, lighter for the shallower (or smaller) configurations of a sweep. The panels of a
figure share their axes. A panel holds one init, named in its title, so its lines are solid; where one panel holds
several inits (figure 4), each has its line style. In figures 7 and 9, thin dashed lines are at init and thick
solid ones at the end of training. Black lines: mean-field theory ({NO_THEORY_FOR_NORMS}). Bands: min to max over
seeds. A red cross marks the step where a run diverged, at its last finite value; a red triangle on a panel's edge,
one whose last value is off the scale.</p>
{"".join(blocks)}
</body></html>
"""
