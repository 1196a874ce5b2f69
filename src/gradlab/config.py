"""Structured configs (a typo'd key fails at once, however it is written) and the semantic checks, all in one place."""

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from gradlab.activations import ACTIVATIONS
from gradlab.data import DATASETS, TOY_KINDS
from gradlab.inits import INITS
from gradlab.layers import NORM_CHOICES
from gradlab.losses import LOSSES
from gradlab.mlp import ARCHS
from gradlab.train import OPTIMIZERS, TrainSettings

LOGGER_MODES = ("offline", "online", "disabled")
DTYPES = ("float32", "float64")
Q_STAR = "q_star"  # dataset.q0's value for the length map's own fixed point
DATASET_OPTIONS = ("test_fraction", "kind", "n_samples", "noise")  # DatasetConfig's per-data-set fields
DEVICES = ("cpu", "cuda")


@dataclass
class DatasetConfig:
    """Every data set's options; conf/dataset/<name>.yaml sets the ones its data set has (gradlab.data.DATASETS
    names them), and the others stay null, so a run's record shows only what applied to it."""

    name: str = "digits"
    loss: str = "cross_entropy"  # the loss this data set trains with, unless `loss` is given
    test_fraction: float | None = None  # digits and toy: the held-out share of a seeded split
    kind: str | None = None  # toy: moons | xor
    n_samples: int | None = None  # toy
    noise: float | None = None  # toy
    q0: Any = None  # every data set: null (as standardized), a number > 0, or q_star: each example's mean square


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-8  # adam


@dataclass
class JacobianConfig:
    examples: int = 16  # fixed test examples whose d h^{depth-1} / d x is measured; 0 turns it off
    every_epoch: bool = False  # true: at step 0 and every epoch's end (each measurement: docs/performance.md)


@dataclass
class LoggerConfig:
    mode: str = "offline"  # offline | online | disabled; the WANDB_MODE environment variable wins
    project: str = "gradlab"
    entity: str | None = None


@dataclass
class Config:
    depth: int = 10
    width: int = 64
    activation: str = "sigmoid"
    init: str = "xavier_uniform"
    init_gain: float = 1.0
    bias_std: float = 0.0  # sigma_b: biases start N(0, bias_std^2)
    arch: str = "plain"  # plain | residual
    residual_scale: float = 1.0  # alpha: h^l = h^{l-1} + alpha z^l
    norm: str = "none"  # none | layernorm | batchnorm
    lr: float = 0.1
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 100
    seed: int = 0
    replicas: int = 1  # R > 1: seeds seed..seed+R-1 trained as one batched network
    log_every: int = 5
    clip_grad_norm: float | None = None
    loss: str | None = None
    device: str = "cpu"
    dtype: str = "float32"  # float64: the network, its data and its training in double precision
    data_dir: str = "data"
    skip_completed: bool = False  # re-running a sweep: skip jobs whose record says completed
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    jacobian: JacobianConfig = field(default_factory=JacobianConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="gradlab_schema", node=Config)


class ConfigError(ValueError):
    """A bad config value: the message names the key, the bad value and what is allowed."""


def one_of(key: str, value: object, allowed: object) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; expected one of: {', '.join(map(str, allowed))}")


def _at_least(key: str, value: float, low: float, strict: bool = False) -> None:
    if value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ConfigError(f"{key}={value!r} is not allowed; expected a number {bound}")


def loss_name(cfg: DictConfig | Config) -> str:
    """The loss in force: `loss` when given, else the data set's own."""
    return cfg.loss if cfg.loss is not None else cfg.dataset.loss


def train_settings(cfg: DictConfig | Config) -> TrainSettings:
    """The training loop's settings from a (validated) config."""
    opt = cfg.optimizer
    return TrainSettings(lr=cfg.lr, momentum=cfg.momentum, clip_grad_norm=cfg.clip_grad_norm, epochs=cfg.epochs,
                         batch_size=cfg.batch_size, log_every=cfg.log_every, optimizer=opt.name, beta1=opt.beta1,
                         beta2=opt.beta2, eps=opt.eps, jacobian_examples=cfg.jacobian.examples,
                         jacobian_every_epoch=cfg.jacobian.every_epoch)


def validate_dataset(options: DatasetConfig | DictConfig) -> None:
    """The data set's own options are set and valid; an option it does not have is not set at all."""
    one_of("dataset.name", options.name, list(DATASETS))
    own = DATASETS[options.name].options
    for option in DATASET_OPTIONS:
        value = getattr(options, option)
        if option in own and value is None:
            raise ConfigError(f"dataset.{option} is not set; dataset={options.name} needs a value")
        if option not in own and value is not None:
            raise ConfigError(f"dataset.{option}={value!r} is not allowed: dataset={options.name} has no {option}; "
                              f"its options are: {', '.join(own) or 'none'}")
    q0 = options.q0
    if q0 is not None and q0 != Q_STAR and (isinstance(q0, bool) or not isinstance(q0, int | float) or q0 <= 0):
        raise ConfigError(f"dataset.q0={q0!r} is not allowed; expected null, a number > 0, or {Q_STAR}")
    if "test_fraction" in own:
        _check_test_fraction(options)
    if options.kind is not None:
        _check_toy(options)


def _check_test_fraction(options: DatasetConfig | DictConfig) -> None:
    if not 0 < options.test_fraction < 1:
        fraction = options.test_fraction
        raise ConfigError(f"dataset.test_fraction={fraction!r} is not allowed; expected a number in (0, 1)")


def _check_toy(options: DatasetConfig | DictConfig) -> None:
    one_of("dataset.kind", options.kind, TOY_KINDS)
    _at_least("dataset.noise", options.noise, 0)
    _at_least("dataset.n_samples", options.n_samples, 2)
    n_test = max(1, round(options.test_fraction * options.n_samples))  # as gradlab.data.split_arrays takes it
    if n_test >= options.n_samples:
        raise ConfigError(
            f"dataset.n_samples={options.n_samples!r} with dataset.test_fraction={options.test_fraction!r} leaves "
            "no training example; expected more samples or a smaller test_fraction"
        )


def validate_architecture(cfg: DictConfig | Config) -> None:
    one_of("arch", cfg.arch, ARCHS)
    one_of("norm", cfg.norm, NORM_CHOICES)
    _at_least("residual_scale", cfg.residual_scale, 0, strict=True)
    if cfg.arch == "residual" and cfg.depth < 2:
        raise ConfigError(f"arch='residual' with depth={cfg.depth} is not allowed: a residual net needs an input "
                          "layer and a readout; expected depth >= 2")
    if cfg.norm == "batchnorm" and cfg.batch_size < 2:
        raise ConfigError(f"norm='batchnorm' with batch_size={cfg.batch_size} is not allowed: a batch of one has no "
                          "variance; expected batch_size >= 2")


def validate_optimizer(opt: OptimizerConfig | DictConfig) -> None:
    one_of("optimizer.name", opt.name, list(OPTIMIZERS))
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(opt, key) < 1:
            raise ConfigError(f"optimizer.{key}={getattr(opt, key)!r} is not allowed; expected a number in [0, 1)")
    _at_least("optimizer.eps", opt.eps, 0, strict=True)


def validate(cfg: DictConfig | Config) -> None:
    """Raise ConfigError for the first bad value; checks every rule of the config in one place."""
    check_known_keys(cfg)
    _at_least("depth", cfg.depth, 1)
    _at_least("width", cfg.width, 1)
    _at_least("lr", cfg.lr, 0, strict=True)
    _at_least("batch_size", cfg.batch_size, 1)
    _at_least("epochs", cfg.epochs, 0)
    _at_least("log_every", cfg.log_every, 1)
    _at_least("replicas", cfg.replicas, 1)
    _at_least("init_gain", cfg.init_gain, 0, strict=True)
    _at_least("bias_std", cfg.bias_std, 0)
    _at_least("jacobian.examples", cfg.jacobian.examples, 0)
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum={cfg.momentum!r} is not allowed; expected a number in [0, 1)")
    if cfg.clip_grad_norm is not None:
        _at_least("clip_grad_norm", cfg.clip_grad_norm, 0, strict=True)
    validate_architecture(cfg)
    validate_optimizer(cfg.optimizer)
    one_of("activation", cfg.activation, list(ACTIVATIONS))
    one_of("init", cfg.init, list(INITS))
    validate_dataset(cfg.dataset)
    one_of("loss", loss_name(cfg), list(LOSSES))
    one_of("logger.mode", cfg.logger.mode, LOGGER_MODES)
    one_of("device", cfg.device, DEVICES)
    one_of("dtype", cfg.dtype, DTYPES)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' is not available on this machine; expected one of: cpu")
    needs = LOSSES[loss_name(cfg)].n_classes
    has = DATASETS[cfg.dataset.name].n_classes
    if needs is not None and needs != has:
        fitting = [name for name, loss in LOSSES.items() if loss.n_classes in (None, has)]
        raise ConfigError(
            f"loss={loss_name(cfg)!r} needs a {needs}-class data set, but dataset={cfg.dataset.name!r} "
            f"has {has} classes; expected one of: {', '.join(fitting)}"
        )


def schema_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Every key the schema knows, dotted (dataset.noise), nested configs included."""
    keys = []
    for item in dataclasses.fields(schema):
        name = f"{prefix}{item.name}"
        nested = item.default_factory if item.default_factory is not dataclasses.MISSING else None
        keys += [name, *schema_keys(nested, f"{name}.")] if dataclasses.is_dataclass(nested) else [name]
    return keys


def unknown_key(key: str, written: str | None = None) -> ConfigError:
    """The error for a key the schema does not know, with the nearest known key."""
    near = difflib.get_close_matches(key, schema_keys(), n=1, cutoff=0.6)
    where = f" (in {written})" if written and written != key else ""
    hint = f"did you mean {near[0]!r}? " if near else ""
    return ConfigError(f"unknown config key {key!r}{where}; {hint}every key is in conf/config.yaml")


def config_keys(cfg: Mapping, prefix: str = "") -> Iterable[str]:
    """The dotted keys of a composed config, nested ones included."""
    for key, value in cfg.items():
        yield f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from config_keys(value, f"{prefix}{key}.")


def check_known_keys(cfg: DictConfig | Config) -> None:
    """A key added to the config that the schema does not know (Hydra's `+detph=30`) is an error, not a new key."""
    if dataclasses.is_dataclass(cfg):
        return  # a Config instance holds its own fields only
    known = set(schema_keys())
    for key in config_keys(cfg):
        if key not in known:
            raise unknown_key(key)
