"""Data sets: the offline ones load and standardize; MNIST goes through torchvision's real reader."""

import math
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sklearn.datasets
import torch

from conftest import compose_config, run_cli
from gradlab.data import (
    DATASETS,
    DataUnavailable,
    digits_arrays,
    download_failure,
    make_moons,
    rescale_lengths,
    split_arrays,
    standardize,
)
from gradlab.experiment import prepare
from gradlab.theory_depth import length_fixed_point

OPTIONS = SimpleNamespace(test_fraction=0.2, kind="moons", n_samples=200, noise=0.2)


def test_digits_is_the_full_set_split_and_standardized():
    split = DATASETS["digits"].load(Path("unused"), OPTIONS)
    assert len(split.x_train) + len(split.x_test) == 1797
    assert split.x_train.shape[1] == 64 and split.n_classes == 10
    assert torch.isfinite(split.x_train).all() and torch.isfinite(split.x_test).all()
    varying = split.x_train.std(0) > 0
    assert varying.sum() < 64  # digits has constant pixels: they must stay finite, not NaN
    assert torch.allclose(split.x_train.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(split.x_train.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-4)
    assert set(split.y_train.tolist()) == set(range(10))


def test_digits_arrays_are_exactly_scikit_learns():
    bunch = sklearn.datasets.load_digits()
    data, target = digits_arrays()
    assert data.dtype == bunch.data.dtype and data.shape == bunch.data.shape == (1797, 64)
    assert target.dtype == bunch.target.dtype and np.array_equal(target, bunch.target)
    assert data.tobytes() == bunch.data.tobytes()


def test_digits_split_is_the_one_scikit_learns_arrays_give():
    bunch = sklearn.datasets.load_digits()
    x, y = torch.tensor(bunch.data, dtype=torch.float32), torch.tensor(bunch.target, dtype=torch.long)
    expected = split_arrays(x, y, OPTIONS.test_fraction, n_classes=10)
    split = DATASETS["digits"].load(Path("unused"), OPTIONS)
    assert all(torch.equal(a, b) for a, b in zip(split[:4], expected[:4], strict=True))


def test_loading_digits_does_not_import_scikit_learn():
    code = ("import sys; from pathlib import Path; from types import SimpleNamespace; "
            "from gradlab.data import DATASETS; "
            "DATASETS['digits'].load(Path('unused'), SimpleNamespace(test_fraction=0.2)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("n_samples", "noise"), [(1000, 0.2), (200, 0.0), (7, 1.5)])
def test_moons_are_exactly_scikit_learns(n_samples: int, noise: float):
    points, labels = make_moons(n_samples, noise, seed=0)
    expected_points, expected_labels = sklearn.datasets.make_moons(n_samples, noise=noise, random_state=0)
    assert points.tobytes() == expected_points.tobytes() and points.dtype == expected_points.dtype
    assert np.array_equal(labels, expected_labels) and labels.dtype == expected_labels.dtype


def test_digits_split_is_fixed_across_calls():
    first = DATASETS["digits"].load(Path("unused"), OPTIONS)
    second = DATASETS["digits"].load(Path("unused"), OPTIONS)
    assert torch.equal(first.x_test, second.x_test) and torch.equal(first.y_train, second.y_train)


def test_standardize_leaves_constant_features_finite():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    x_train, x_test = standardize(x, x)
    assert torch.isfinite(x_train).all()
    assert torch.equal(x_train[:, 1], torch.zeros(2))


@pytest.mark.parametrize("kind", ["moons", "xor"])
def test_toy_is_two_dimensional_and_binary(kind):
    options = SimpleNamespace(**{**vars(OPTIONS), "kind": kind})
    split = DATASETS["toy"].load(Path("unused"), options)
    assert split.x_train.shape == (160, 2) and split.x_test.shape == (40, 2)
    assert set(split.y_train.tolist()) == {0, 1} and split.n_classes == 2


def write_idx(path: Path, array: torch.Tensor) -> None:
    """An IDX file as LeCun's MNIST ships it: magic (0, 0, 0x08 ubyte, ndim), big-endian dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def write_tiny_mnist(root: Path, folder: str, n_train: int = 30, n_test: int = 10) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=gen))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(n) % 10)


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_reads_tiny_idx_files(tmp_path: Path, name: str, folder: str):
    write_tiny_mnist(tmp_path, folder)
    split = DATASETS[name].load(tmp_path, OPTIONS)
    assert split.x_train.shape == (30, 784) and split.x_test.shape == (10, 784)
    assert split.y_train.tolist() == [i % 10 for i in range(30)]
    assert torch.isfinite(split.x_train).all()
    assert abs(float(split.x_train.mean())) < 1e-5


def test_missing_mnist_offline_raises_a_message_naming_set_folder_and_alternative(tmp_path: Path):
    started = time.monotonic()
    with pytest.raises(DataUnavailable) as error:
        DATASETS["mnist"].load(tmp_path, OPTIONS)
    assert time.monotonic() - started < 60
    message = str(error.value)
    assert "dataset=mnist" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "dataset=digits" in message and "\n" not in message
    assert "()" not in message and ":)" not in message  # the reason is given, not an empty detail
    assert list(tmp_path.iterdir()) == []  # the failed download leaves no empty MNIST/raw behind


def test_download_failure_gives_the_last_mirrors_reason():
    """torchvision's message lists each mirror's error after a header; the header alone says nothing."""
    error = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror-a/, got:\n<urlopen error "
                         "[Errno -2] Name or service not known>\nTried mirror-b/, got:\n<urlopen error timed out>\n")
    assert download_failure(error) == "timed out"
    assert download_failure(RuntimeError("")) == "RuntimeError"


def test_mnist_run_on_tiny_idx_files_trains(tmp_path: Path):
    write_tiny_mnist(tmp_path / "data", "MNIST")
    result = run_cli("dataset=mnist", "epochs=1", "depth=3", "batch_size=10", "logger.mode=disabled",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [summary] = list((tmp_path / "runs").rglob("summary.json"))
    assert '"status": "completed"' in summary.read_text()


def test_missing_mnist_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path):
    result = run_cli("dataset=mnist", "logger.mode=disabled", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "dataset=digits" in lines[0] and "MNIST" in lines[0]


def test_rescaled_examples_have_the_asked_mean_square_and_a_zero_row_stays_zero():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    rescaled = rescale_lengths(x, 0.5)
    torch.testing.assert_close(rescaled.pow(2).mean(-1), torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(rescaled[0] / rescaled[0].norm(), x[0] / x[0].norm())  # the direction is kept


def test_q_star_inputs_sit_at_the_length_maps_fixed_point():
    """Pennington et al.'s operating point: tanh, sigma_w^2 = 1.05, sigma_b^2 = 2.01e-5; q* = 0.026."""
    cfg = compose_config("activation=tanh", "init=lecun_normal", "init_gain=1.0247", "bias_std=0.004483",
                         "dataset.q0=q_star")
    setup = prepare(cfg)
    q_star = length_fixed_point("tanh", 1.0247**2, 0.004483**2)
    assert setup.facts["input_q0"] == pytest.approx(q_star) and q_star == pytest.approx(0.026, abs=5e-4)
    assert setup.facts["input_q0_quantiles"] == pytest.approx([q_star] * 16, rel=1e-5)  # what the theory reads


@pytest.mark.parametrize(("rows", "shape"), [(False, (64, 1)), (True, (8, 8))])
def test_seq_digits_reads_each_image_pixel_by_pixel_or_row_by_row(rows: bool, shape: tuple[int, int]):
    digits = DATASETS["digits"].load(Path("unused"), OPTIONS)
    seq = DATASETS["seq_digits"].load(Path("unused"), SimpleNamespace(test_fraction=0.2, rows=rows))
    assert seq.x_train.shape == (len(digits.x_train), *shape) and DATASETS["seq_digits"].sequence
    image = digits.x_train[5].reshape(8, 8)  # row-major 8x8: step t reads pixel t (or row t)
    assert torch.equal(seq.x_train[5].reshape(8, 8), image) and torch.equal(seq.y_test, digits.y_test)
    if rows:
        assert torch.equal(seq.x_train[5, 2], image[2])  # step 3 is the image's third row


def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    split = DATASETS["adding"].load(Path("unused"), SimpleNamespace(seq_len=50, n_train=400, n_test=100))
    x, y = split.x_train, split.y_train
    assert x.shape == (400, 50, 2) and y.shape == (400, 1) and DATASETS["adding"].regression
    markers = x[..., 1]
    assert (markers[:, :25].sum(1) == 1).all() and (markers[:, 25:].sum(1) == 1).all()
    torch.testing.assert_close(y[:, 0], (x[..., 0] * markers).sum(1))
    assert 0 <= x[..., 0].min() and x[..., 0].max() < 1
    baseline = (split.y_test - 1).pow(2).mean()  # always answering 1: E[(u + v - 1)^2] = 1/6
    assert abs(float(baseline) - 1 / 6) < 0.03


def test_copy_task_recalls_ten_symbols_after_the_delay_and_its_memoryless_baseline_is_ten_ln_8():
    """Arjovsky et al. 2016: 10 symbols from 1..8, delay - 1 blanks, the delimiter 9, 10 blanks; the targets are
    blanks but for the symbols at the end. Answering blank until the delimiter, then uniform over the 8 symbols,
    costs 10 ln 8 per sequence: the baseline a network that remembers nothing reaches."""
    from gradlab.losses import LOSSES, over_steps

    delay = 7
    split = DATASETS["copy"].load(Path("unused"), SimpleNamespace(seq_len=delay, n_train=300, n_test=50))
    x, y = split.x_train, split.y_train
    assert x.shape == (300, delay + 20, 10) and y.shape == (300, delay + 20) and DATASETS["copy"].per_step
    symbols = x.argmax(-1)
    assert ((symbols[:, :10] >= 1) & (symbols[:, :10] <= 8)).all() and (x.sum(-1) == 1).all()
    assert (symbols[:, 10 : delay + 9] == 0).all() and (symbols[:, delay + 9] == 9).all()
    assert (symbols[:, delay + 10 :] == 0).all()
    assert (y[:, : delay + 10] == 0).all() and torch.equal(y[:, delay + 10 :], symbols[:, :10])
    memoryless = torch.full((300, delay + 20, split.n_classes), -1e4)
    memoryless[:, : delay + 10, 0] = 0  # certain of the blank while the symbols are not asked for
    memoryless[:, delay + 10 :, 1:] = 0  # then uniform over a_1..a_8
    per_sequence = over_steps(LOSSES["cross_entropy"]).value(memoryless, y)
    torch.testing.assert_close(per_sequence, torch.full((300,), 10 * math.log(8)))
