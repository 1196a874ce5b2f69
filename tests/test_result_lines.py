"""What a user sees: one line per job (its place in the sweep, name, status, test accuracy, seconds, folder, the
time the sweep has left), and a sweep's count by status with the command that builds its report."""

import json
import os
import re
from pathlib import Path

from conftest import run_cli
from gradlab.result_lines import job_line, sweep_line
from gradlab.sweeps import SWEEP_STATE, start_state


def gradlab_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gradlab: ")]


def test_each_job_ends_with_one_line_and_the_sweep_with_its_count_and_report_command(tmp_path: Path):
    result = run_cli("-m", "lr=0.1,1000", "activation=relu", "init=normal", "depth=3", "epochs=1",
                     "logger.mode=disabled", "hydra.sweep.dir=my_sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    *jobs, closing = gradlab_lines(result.stderr)
    assert len(jobs) == 2
    for k, (line, folder) in enumerate(zip(jobs, sorted((tmp_path / "my_sweep").glob("[0-9]_*")), strict=True)):
        summary = json.loads((folder / "summary.json").read_text())
        name = folder.name.split("_", 1)[1]
        accuracy = summary["final_test_accuracy"]
        assert line.startswith(f"gradlab: [{k + 1}/2] {name}: {summary['status']}, test accuracy ")
        assert (f"{accuracy:.3f}" if accuracy is not None else "-") in line
        assert f"{summary['wall_seconds']:.2f} s, my_sweep/{folder.name}" in line
        if k == 0:  # the first job says how long the rest of the sweep will take; the last has nothing left
            assert re.search(r"; about \d+ (s|min) left in the sweep$", line), line
        else:
            assert line.endswith(f"my_sweep/{folder.name}")
        shown = len(line) - len(name) - len(f"my_sweep/{folder.name}")
        assert shown <= 90  # short: a 100-job sweep stays readable
    assert "1 completed" in closing and "1 diverged" in closing and "2 jobs" in closing
    assert closing.endswith("python analysis/report.py my_sweep")


def test_single_run_ends_with_its_line_and_no_sweep_line(tmp_path: Path):
    result = run_cli("depth=3", "epochs=1", "logger.mode=disabled", "hydra.run.dir=single", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = gradlab_lines(result.stderr)
    summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert summary["torch_threads"] == 1  # small work: one thread (gradlab.sweeps.torch_threads)
    assert line == (f"gradlab: depth=3,epochs=1: completed, test accuracy {summary['final_test_accuracy']:.3f}, "
                    f"{summary['wall_seconds']:.2f} s, single")


def test_result_line_of_replicas_says_its_accuracy_is_their_mean(tmp_path: Path):
    write_summary(tmp_path / "all", status="completed", final_test_accuracy=0.5, wall_seconds=1.0,
                  replicas=[{}] * 4, replicas_diverged=0)
    write_summary(tmp_path / "some", status="completed", final_test_accuracy=0.5, wall_seconds=1.0,
                  replicas=[{}] * 4, replicas_diverged=1)
    assert "test accuracy 0.500 (mean of 4 replicas), 1.00 s" in job_line(tmp_path / "all", "replicas=4")
    assert "0.500 (mean of the 3 of 4 replicas that did not diverge)" in job_line(tmp_path / "some", "replicas=4")


def test_replicas_run_on_the_command_line_says_mean_of_replicas(tmp_path: Path):
    result = run_cli("depth=2", "epochs=1", "replicas=3", "logger.mode=disabled", "hydra.run.dir=r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = gradlab_lines(result.stderr)
    assert "(mean of 3 replicas)" in line


def test_job_line_counts_the_place_in_the_sweep_and_estimates_the_time_left(tmp_path: Path):
    sweep = tmp_path / "sweep"
    state = start_state(sweep, jobs=10)
    (sweep / SWEEP_STATE).write_text(json.dumps({**state, "started": state["started"] - 40}))  # 40 s ago
    write_summary(sweep / "3_seed=3", status="completed", final_test_accuracy=0.9, wall_seconds=9.0)
    line = job_line(sweep / "3_seed=3", "seed=3", sweep, number=3)  # the 4th of 10 jobs, after 40 s: 10 s a job
    assert line.startswith("gradlab: [4/10] seed=3: completed")
    assert line.endswith("; about 60 s left in the sweep")
    start_state(sweep, jobs=10)  # started just now: the jobs so far took no time
    assert job_line(sweep / "3_seed=3", "seed=3", sweep, number=3).endswith("; about 1 s left in the sweep")


def write_summary(folder: Path, **summary) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))


def test_sweep_line_counts_a_record_older_than_the_sweep_as_skipped(tmp_path: Path):
    sweep = tmp_path / "sweep"
    write_summary(sweep / "0_seed=0", status="completed")
    write_summary(sweep / "1_seed=1", status="completed")
    os.utime(sweep / "0_seed=0" / "summary.json", (1_000, 1_000))
    assert "2 jobs: 1 completed, 1 skipped (completed earlier)" in sweep_line(sweep, started=2_000)


def test_sweep_line_counts_recorded_statuses_most_common_first(tmp_path: Path):
    sweep = tmp_path / "sweep"
    for i, status in enumerate(["completed", "diverged", "completed", "failed", "completed", "diverged"]):
        write_summary(sweep / f"{i}_seed={i}", status=status)
    (sweep / ".submitit").mkdir()  # a launcher's folder: no job record
    line = sweep_line(sweep)
    assert line.startswith("gradlab: sweep done, 6 jobs: 3 completed, 2 diverged, 1 failed; ")
    assert line.endswith(f"report: python analysis/report.py {sweep}")


def test_job_line_of_a_run_that_failed_before_evaluating_shows_no_accuracy(tmp_path: Path):
    write_summary(tmp_path / "job", status="failed", final_test_accuracy=None, wall_seconds=0.31)
    expected = f"gradlab: depth=3: failed, test accuracy -, 0.31 s, {tmp_path / 'job'}"
    assert job_line(tmp_path / "job", "depth=3") == expected


def test_job_line_scores_a_run_by_its_data_sets_baseline_metric_beside_the_baseline(tmp_path: Path):
    """The copy task reports its loss per sequence, the adding problem its MSE, each beside what a network that
    learned nothing scores; a classification run's line is unchanged."""
    write_summary(tmp_path / "copy", status="completed", final_test_accuracy=0.85, final_test_loss=10.285,
                  baseline_metric="test_loss", baseline=20.794, wall_seconds=1.0)
    assert ", test loss 10.285 (baseline 20.794), 1.00 s" in job_line(tmp_path / "copy", "cell=lstm")
    write_summary(tmp_path / "adding", status="completed", final_test_accuracy=None, final_test_mse=0.0123,
                  baseline_metric="test_mse", baseline=1 / 6, wall_seconds=1.0)
    assert ", test MSE 0.012 (baseline 0.167), 1.00 s" in job_line(tmp_path / "adding", "cell=lstm")
    write_summary(tmp_path / "digits", status="completed", final_test_accuracy=0.91, baseline_metric="test_accuracy",
                  baseline=0.1, wall_seconds=1.0)
    assert ", test accuracy 0.910, 1.00 s" in job_line(tmp_path / "digits", "depth=3")
