"""Data sets, one registry: each loads a standardized train/test Split of float tensors.

`digits` (scikit-learn's 8x8 digits, shipped inside the package) and `toy` (generated in code) work
offline. `mnist` and `fashion_mnist` go through torchvision's own dataset classes under data_dir.
"""

import contextlib
import io
import socket
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

SPLIT_SEED = 0  # the train/test split is fixed: every run of a sweep sees the same held-out set
TOY_KINDS = ("moons", "xor")
DOWNLOAD_TIMEOUT_S = 20
INPUT_LENGTH_QUANTILES = 16  # the theory averages over this many input lengths (see gradlab.theory)


class Split(NamedTuple):
    x_train: Tensor  # (N, n_features)
    y_train: Tensor  # (N,) class indices
    x_test: Tensor
    y_test: Tensor
    n_classes: int


class DatasetOptions(Protocol):
    test_fraction: float
    kind: str
    n_samples: int
    noise: float


class DataUnavailable(RuntimeError):
    """The data set's files are not on disk and cannot be downloaded: the message says what to do."""


class DataSource(NamedTuple):
    load: Callable[[Path, DatasetOptions], Split]  # (data_dir, options) -> Split
    n_classes: int


def input_length_quantiles(x: Tensor, count: int = INPUT_LENGTH_QUANTILES) -> list[float]:
    """Quantiles (i + 0.5) / count of q^0 = mean over features of x^2, one q^0 per example: the theory's input."""
    lengths = x.double().pow(2).mean(1)
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return torch.quantile(lengths, levels).tolist()


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


def load_digits(data_dir: Path, options: DatasetOptions) -> Split:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32)  # (1797, 64), pixel values 0..16
    y = torch.tensor(bunch.target, dtype=torch.long)
    return split_arrays(x, y, options.test_fraction, n_classes=10)


def load_toy(data_dir: Path, options: DatasetOptions) -> Split:
    """The tutorial's 2-D binary problem: noisy moons, or XOR of the quadrants."""
    if options.kind == "moons":
        from sklearn.datasets import make_moons

        points, labels = make_moons(options.n_samples, noise=options.noise, random_state=SPLIT_SEED)
        x, y = torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    elif options.kind == "xor":
        gen = torch.Generator().manual_seed(SPLIT_SEED)
        clean = torch.rand(options.n_samples, 2, generator=gen) * 2 - 1
        y = ((clean[:, 0] > 0) ^ (clean[:, 1] > 0)).long()
        x = clean + options.noise * torch.randn(options.n_samples, 2, generator=gen)
    else:
        raise ValueError(f"Unknown toy kind {options.kind!r}. Expect one of {TOY_KINDS}")
    return split_arrays(x, y, options.test_fraction, n_classes=2)


def _torchvision_set(name: str, cls_name: str, data_dir: Path, train: bool):
    """torchvision's own class: from disk if there, else a download, else DataUnavailable."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(root=str(data_dir), train=train, download=False)
    except RuntimeError:
        pass  # not on disk yet: try to download it
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torchvision opens URLs without a timeout
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return cls(root=str(data_dir), train=train, download=True)
    except Exception as error:  # no network, a proxy, a mirror down: all mean the same to the user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataUnavailable(
            f"dataset={name}: no {cls_name} files in {data_dir / cls_name / 'raw'} and the download "
            f"failed ({reason}); run once with a network, or use dataset=digits, which works offline"
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
    "digits": DataSource(load_digits, n_classes=10),
    "toy": DataSource(load_toy, n_classes=2),
    "mnist": DataSource(torchvision_loader("mnist", "MNIST"), n_classes=10),
    "fashion_mnist": DataSource(torchvision_loader("fashion_mnist", "FashionMNIST"), n_classes=10),
}
