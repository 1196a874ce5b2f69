"""Data sets, one registry: each loads a standardized train/test Split of float tensors.

`digits` (scikit-learn's 8x8 digits, read from the file scikit-learn ships, without importing it) and
`toy` (generated in code) work offline. `mnist` and `fashion_mnist` go through torchvision's own dataset
classes under data_dir.
"""

import contextlib
import gzip
import importlib.util
import io
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

SPLIT_SEED = 0  # the train/test split is fixed: every run of a sweep sees the same held-out set
TOY_KINDS = ("moons", "xor")
DOWNLOAD_TIMEOUT_S = 20
INPUT_LENGTH_QUANTILES = 16  # the theory averages over this many input lengths (see gradlab.theory)


class Split(NamedTuple):
    x_train: Tensor  # (N, n_features), or (N, T, n_features) for a sequence data set
    y_train: Tensor  # (N,) class indices, or (N, n_out) numbers for a regression data set
    x_test: Tensor
    y_test: Tensor
    n_classes: int  # a regression data set: its number of outputs


class DatasetOptions(Protocol):
    test_fraction: float
    kind: str
    n_samples: int
    noise: float
    rows: bool
    seq_len: int
    n_train: int
    n_test: int


class DataUnavailable(RuntimeError):
    """The data set's files are not on disk and cannot be downloaded: the message says what to do."""


class Baseline(NamedTuple):
    """What a network that learned nothing from the inputs scores: the final_<metric> a run compares with."""

    metric: str  # test_accuracy, test_mse or test_loss
    value: float
    what: str  # how that score is reached, in a few words


class DataSource(NamedTuple):
    load: Callable[[Path, DatasetOptions], Split]  # (data_dir, options) -> Split
    n_classes: int
    options: tuple[str, ...] = ()  # the dataset.* options it reads; conf/dataset/<name>.yaml sets exactly these
    sequence: bool = False  # examples are sequences (N, T, n_in), for a recurrent network; else vectors (N, n_in)
    regression: bool = False  # targets are numbers (N, n_out), scored by their squared error; else class indices
    per_step: bool = False  # a target at every time step, (N, T): for an RNN with readout=every
    baseline: Baseline | None = None  # None: guessing, test_accuracy 1 / n_classes


def baseline(name: str) -> Baseline:
    """The score of a network that learned nothing on data set `name`."""
    source = DATASETS[name]
    return source.baseline or Baseline("test_accuracy", 1 / max(source.n_classes, 2), "guessing")


def input_length_quantiles(x: Tensor, count: int = INPUT_LENGTH_QUANTILES) -> list[float]:
    """Quantiles (i + 0.5) / count of q^0 = mean over features (and steps) of x^2, one q^0 per example: the theory's
    input."""
    lengths = x.double().flatten(1).pow(2).mean(1)
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return torch.quantile(lengths, levels).tolist()


def rescale_lengths(x: Tensor, q0: float) -> Tensor:
    """Each example (row) scaled so that its mean square over features, q^0, is q0; an all-zero row stays 0."""
    lengths = x.pow(2).mean(-1, keepdim=True)
    return torch.where(lengths > 0, x * torch.sqrt(q0 / lengths.clamp_min(torch.finfo(x.dtype).tiny)), x)


def standardize(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Zero mean, unit variance per feature with training statistics; constant features stay finite."""
    mean = x_train.mean(0)
    std = x_train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x_train - mean) / std, (x_test - mean) / std


def split_arrays(x: Tensor, y: Tensor, test_fraction: float, n_classes: int) -> Split:
    """A fixed, seeded shuffle split into train and test, then standardized."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = max(1, round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    x_train, x_test = standardize(x[train], x[test])
    return Split(x_train, y[train], x_test, y[test], n_classes)


def digits_file() -> Path:
    """The 8x8 digits as scikit-learn ships them, found without importing scikit-learn (1.2 s of imports)."""
    spec = importlib.util.find_spec("sklearn")  # a top-level package: found, not imported
    folders = spec.submodule_search_locations if spec else None
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():
        raise DataUnavailable("dataset=digits: scikit-learn's digits.csv.gz was not found; install scikit-learn "
                              "(pip install scikit-learn) or use dataset=toy")
    return path


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(data (1797, 64) float64, target (1797,) int), read as sklearn.datasets.load_digits reads them."""
    with gzip.open(digits_file(), mode="rt", encoding="utf-8") as text:
        table = np.loadtxt(text, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int, copy=False)


def load_digits(data_dir: Path, options: DatasetOptions) -> Split:
    data, target = digits_arrays()
    x = torch.tensor(data, dtype=torch.float32)  # (1797, 64), pixel values 0..16
    y = torch.tensor(target, dtype=torch.long)
    return split_arrays(x, y, options.test_fraction, n_classes=10)


def load_seq_digits(data_dir: Path, options: DatasetOptions) -> Split:
    """The 8x8 digits read as sequences, the offline stand-in for pixel-by-pixel MNIST: one standardized pixel per
    step (T = 64, n_in = 1), or with dataset.rows=true one row of 8 pixels per step (T = 8, n_in = 8)."""
    split = load_digits(data_dir, options)
    steps, width = (8, 8) if options.rows else (64, 1)
    x_train, y_train, x_test, y_test = split[:4]
    return Split(x_train.reshape(-1, steps, width), y_train, x_test.reshape(-1, steps, width), y_test, 10)


def adding_problem(n: int, steps: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Hochreiter & Schmidhuber 1997's adding problem as Le et al. 2015 pose it: x_t = (u_t, m_t), u_t ~ U(0, 1),
    one marker m_t = 1 in the first half and one in the second; the target is the sum of the two marked u_t."""
    values = torch.rand(n, steps, generator=gen)
    half = steps // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, steps, (n,), generator=gen)
    markers = torch.zeros(n, steps)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    target = (values * markers).sum(1, keepdim=True)  # (n, 1)
    return torch.stack([values, markers], dim=-1), target


def load_adding(data_dir: Path, options: DatasetOptions) -> Split:
    """The adding problem, generated (seeded) at dataset.seq_len steps: always answering 1 scores an MSE of 1/6."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    x_train, y_train = adding_problem(options.n_train, options.seq_len, gen)
    x_test, y_test = adding_problem(options.n_test, options.seq_len, gen)
    return Split(x_train, y_train, x_test, y_test, 1)


COPY_SYMBOLS, COPY_LENGTH = 8, 10  # the copy task's alphabet a_1..a_8 and how many symbols it recalls


def copy_task(n: int, delay: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Arjovsky, Shah & Bengio (2016)'s copy task: 10 symbols from a_1..a_8, delay - 1 blanks a_0, the delimiter a_9,
    then 10 blanks, one-hot (n, delay + 20, 10); the targets (n, delay + 20) are blanks but for the 10 symbols
    at the end. Answering blank, then guessing, scores a cross-entropy of 10 ln 8 per sequence."""
    symbols = torch.randint(1, COPY_SYMBOLS + 1, (n, COPY_LENGTH), generator=gen)
    blanks = torch.zeros(n, delay - 1, dtype=torch.long)
    marker = torch.full((n, 1), COPY_SYMBOLS + 1, dtype=torch.long)
    tail = torch.zeros(n, COPY_LENGTH, dtype=torch.long)
    inputs = torch.cat([symbols, blanks, marker, tail], dim=1)
    targets = torch.cat([torch.zeros(n, delay + COPY_LENGTH, dtype=torch.long), symbols], dim=1)
    return torch.nn.functional.one_hot(inputs, COPY_SYMBOLS + 2).float(), targets


def load_copy(data_dir: Path, options: DatasetOptions) -> Split:
    """The copy task, generated (seeded) with a delay of dataset.seq_len steps: sequences of seq_len + 20 steps."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    x_train, y_train = copy_task(options.n_train, options.seq_len, gen)
    x_test, y_test = copy_task(options.n_test, options.seq_len, gen)
    return Split(x_train, y_train, x_test, y_test, COPY_SYMBOLS + 1)


def make_moons(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, shuffled, plus N(0, noise^2) on each coordinate: the same numbers as
    sklearn.datasets.make_moons(n_samples, noise=noise, random_state=seed) draws (tests/test_data.py)."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer, inner = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    points = np.vstack([np.append(np.cos(outer), 1 - np.cos(inner)),
                        np.append(np.sin(outer), 1 - np.sin(inner) - 0.5)]).T  # (n_samples, 2)
    labels = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    generator = np.random.RandomState(seed)
    order = np.arange(n_samples)
    generator.shuffle(order)
    points, labels = points[order], labels[order]
    points += generator.normal(scale=noise, size=points.shape)
    return points, labels


def load_toy(data_dir: Path, options: DatasetOptions) -> Split:
    """The tutorial's 2-D binary problem: noisy moons, or XOR of the quadrants."""
    if options.kind == "moons":
        points, labels = make_moons(options.n_samples, options.noise, seed=SPLIT_SEED)
        x, y = torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    elif options.kind == "xor":
        gen = torch.Generator().manual_seed(SPLIT_SEED)
        clean = torch.rand(options.n_samples, 2, generator=gen) * 2 - 1
        y = ((clean[:, 0] > 0) ^ (clean[:, 1] > 0)).long()
        x = clean + options.noise * torch.randn(options.n_samples, 2, generator=gen)
    else:
        raise ValueError(f"Unknown toy kind {options.kind!r}. Expect one of {TOY_KINDS}")
    return split_arrays(x, y, options.test_fraction, n_classes=2)


def download_failure(error: Exception) -> str:
    """Why a torchvision download failed, in a few words: torchvision's message is "Error downloading <file>:"
    then, per mirror, "Tried <mirror>, got:" and the error; the last mirror's error is the reason."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Error downloading", "Tried "))]
    reason = reasons[-1] if reasons else type(error).__name__
    return reason.removeprefix("<urlopen error ").removesuffix(">")


def remove_new(paths: list[Path], existed: set[Path]) -> None:
    """Undo a failed download: the files it left in the folders, and the folders it made (deepest first)."""
    for folder in paths:
        for leftover in (p for p in folder.glob("*") if p.is_file() and p not in existed):
            leftover.unlink()
    for folder in reversed(paths):
        if folder not in existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _torchvision_set(name: str, cls_name: str, data_dir: Path, train: bool):
    """torchvision's own class: from disk if there, else a download, else DataUnavailable (leaving nothing behind)."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(root=str(data_dir), train=train, download=False)
    except RuntimeError:
        pass  # not on disk yet: try to download it
    folders = [data_dir, data_dir / cls_name, data_dir / cls_name / "raw"]
    existed = {p for folder in folders if folder.is_dir() for p in [folder, *folder.iterdir()]}
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torchvision opens URLs without a timeout
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return cls(root=str(data_dir), train=train, download=True)
    except Exception as error:  # no network, a proxy, a mirror down: all mean the same to the user
        remove_new(folders, existed)
        raise DataUnavailable(
            f"dataset={name}: no {cls_name} files in {data_dir / cls_name / 'raw'} and the download "
            f"failed ({download_failure(error)}); run once with a network, or use dataset=digits, which works offline"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def torchvision_loader(name: str, cls_name: str) -> Callable[[Path, DatasetOptions], Split]:
    def load(data_dir: Path, options: DatasetOptions) -> Split:
        parts = [_torchvision_set(name, cls_name, data_dir, train) for train in (True, False)]
        x_train, x_test = (p.data.reshape(len(p.data), -1).to(torch.float32) / 255 for p in parts)
        x_train, x_test = standardize(x_train, x_test)
        return Split(x_train, parts[0].targets.long(), x_test, parts[1].targets.long(), 10)

    return load


DATASETS: dict[str, DataSource] = {
    "digits": DataSource(load_digits, n_classes=10, options=("test_fraction",)),
    "toy": DataSource(load_toy, n_classes=2, options=("test_fraction", "kind", "n_samples", "noise")),
    "mnist": DataSource(torchvision_loader("mnist", "MNIST"), n_classes=10),
    "fashion_mnist": DataSource(torchvision_loader("fashion_mnist", "FashionMNIST"), n_classes=10),
    "seq_digits": DataSource(load_seq_digits, n_classes=10, options=("test_fraction", "rows"), sequence=True),
    "adding": DataSource(load_adding, n_classes=1, options=("seq_len", "n_train", "n_test"), sequence=True,
                         regression=True, baseline=Baseline("test_mse", 1 / 6, "always answering 1")),
    "copy": DataSource(load_copy, n_classes=COPY_SYMBOLS + 1, options=("seq_len", "n_train", "n_test"),
                       sequence=True, per_step=True,
                       baseline=Baseline("test_loss", COPY_LENGTH * math.log(COPY_SYMBOLS), "blanks, then guessing")),
}
