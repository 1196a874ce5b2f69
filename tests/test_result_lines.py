"""What a user sees at the end: one line per job (name, status, test accuracy, seconds, folder), and a sweep's
count by status with the command that builds its report."""

import json
from pathlib import Path

from conftest import run_cli
from gradlab.sweeps import job_line, sweep_line


def gradlab_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gradlab: ")]


def test_each_job_ends_with_one_line_and_the_sweep_with_its_count_and_report_command(tmp_path: Path):
    result = run_cli("-m", "lr=0.1,1000", "activation=relu", "init=normal", "depth=3", "epochs=1",
                     "logger.mode=disabled", "hydra.sweep.dir=my_sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    *jobs, closing = gradlab_lines(result.stderr)
    assert len(jobs) == 2
    for line, folder in zip(jobs, sorted((tmp_path / "my_sweep").glob("[0-9]_*")), strict=True):
        summary = json.loads((folder / "summary.json").read_text())
        name = folder.name.split("_", 1)[1]
        accuracy = summary["final_test_accuracy"]
        assert line.startswith(f"gradlab: {name}: {summary['status']}, test accuracy ")
        assert (f"{accuracy:.3f}" if accuracy is not None else "-") in line
        assert f"{summary['wall_seconds']:.2f} s" in line and line.endswith(f"my_sweep/{folder.name}")
        assert len(line) - len(name) - len(f"my_sweep/{folder.name}") <= 60  # short: a 100-job sweep stays readable
    assert "1 completed" in closing and "1 diverged" in closing and "2 jobs" in closing
    assert closing.endswith("python analysis/report.py my_sweep")


def test_single_run_ends_with_its_line_and_no_sweep_line(tmp_path: Path):
    result = run_cli("depth=3", "epochs=1", "logger.mode=disabled", "hydra.run.dir=single", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = gradlab_lines(result.stderr)
    summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert line == (f"gradlab: depth=3,epochs=1: completed, test accuracy {summary['final_test_accuracy']:.3f}, "
                    f"{summary['wall_seconds']:.2f} s, single")


def write_summary(folder: Path, **summary) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))


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
