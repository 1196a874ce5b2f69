"""The findings' Jacobian at init and its verdict, and figure 5's chance level, from run records written by
test_diagnostic_figures.write_job: the shares, spreads and verdicts are the recorded jac_* values and the rule's
thresholds; the chance level is the cross-entropy of a uniform guess over the recorded logits, -ln(1/10)."""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from analysis import report
from test_diagnostic_figures import build, drawn_axes, write_job


def test_findings_give_the_jacobian_at_init_and_its_verdict_where_j_was_measured(tmp_path: Path):
    """Isometric when at least half of J's singular values lie in [0.5, 2]: 0.8 and exactly 0.5 are, 0.2 is not;
    then narrow when the std of ln s is below 1 (one replica: 0.6) and spread when not (two: 0.6, 1.6)."""
    shares = [("orthogonal", 0.8, 2), ("lecun_normal", 0.5, 2), ("xavier_normal", 0.2, 2), ("kaiming_uniform", 0.2, 1)]
    for number, (init, share, replicas) in enumerate(shares):
        write_job(tmp_path, number, init=init, isometry=share, replicas=replicas, depth=6)
    write_job(tmp_path, 4, init="kaiming_normal", old_record=True, depth=6)  # recorded before J was measured
    _, table, _ = report.analyse([tmp_path], progress=False)
    rows = table.set_index("init")
    assert rows["J share in [0.5, 2]"].to_dict() == pytest.approx(
        {"orthogonal": 0.8, "lecun_normal": 0.5, "xavier_normal": 0.2, "kaiming_uniform": 0.2,
         "kaiming_normal": math.nan}, nan_ok=True)
    assert rows["J std ln s"].to_dict() == pytest.approx(
        {"orthogonal": 1.1, "lecun_normal": 1.1, "xavier_normal": 1.1, "kaiming_uniform": 0.6,
         "kaiming_normal": math.nan}, nan_ok=True)  # 0.1 depth + replica, mean over replicas
    assert rows["J verdict"].to_dict() == {"orthogonal": "isometric", "lecun_normal": "isometric",
                                           "xavier_normal": "not isometric: spread",
                                           "kaiming_uniform": "not isometric: narrow, off 1", "kaiming_normal": ""}
    assert set(rows["delta_rms verdict"]) == {"vanishing"}  # 2^layer halves per layer toward the input: a verdict
    # on the signal's size, kept apart from J's


def test_the_report_page_states_the_jacobian_rule_and_tints_its_verdict(tmp_path: Path):
    write_job(tmp_path, 0, init="orthogonal", isometry=0.8, depth=6)
    write_job(tmp_path, 1, init="lecun_normal", isometry=0.2, depth=6)
    page = report.build([tmp_path], progress=False).read_text()
    assert "<th>J verdict</th>" in page and "<th>delta_rms verdict</th>" in page
    assert "<i>isometric</i> when at least 50% of the singular values lie\nin [0.5, 2]" in page
    assert '<td class="text isometric">isometric</td>' in page
    assert '<td class="text narrow">not isometric: narrow, off 1</td>' in page  # one replica: std ln s 0.6


def test_figure_5_draws_the_chance_level_of_the_classes_each_run_recorded(tmp_path: Path):
    write_job(tmp_path, 0, init="orthogonal")  # layer_sizes end in 10 logits, trained with cross-entropy
    write_job(tmp_path, 1, init="lecun_normal")
    inputs, _, _ = report.analyse([tmp_path], progress=False)
    fig = build(inputs, "5_")
    for ax in drawn_axes(fig):
        [chance] = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
        assert chance.get_ydata()[0] == pytest.approx(math.log(10))  # uniform guess over 10: -ln(1/10)
    plt.close(fig)
