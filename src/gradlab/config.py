"""Structured configs: the schema (a typo'd key fails at once, however it is written), and the facts a config
implies. Every semantic check is in gradlab.validation."""

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from gradlab.theory import weight_scale
from gradlab.theory_depth import length_fixed_point
from gradlab.train import TrainSettings

Q_STAR = "q_star"  # dataset.q0's value for the length map's own fixed point
DATASET_OPTIONS = ("test_fraction", "kind", "n_samples", "noise", "rows", "seq_len", "n_train", "n_test")  # per set


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
    rows: bool | None = None  # seq_digits: one row of 8 pixels per step (T = 8) instead of one pixel (T = 64)
    seq_len: int | None = None  # adding: the sequence length T; copy: the delay (sequences of seq_len + 20 steps)
    n_train: int | None = None  # adding, copy: generated training sequences
    n_test: int | None = None  # adding, copy: generated test sequences
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
class CurvatureConfig:
    every: int = 0  # steps between measurements of the sharpness (the loss Hessian's top eigenvalue); 0: never
    examples: int = 2000  # the first this many training examples, fixed: the loss whose Hessian is measured


@dataclass
class LoggerConfig:
    mode: str = "offline"  # offline | online | disabled; the WANDB_MODE environment variable wins
    project: str = "gradlab"
    entity: str | None = None


@dataclass
class Config:
    net: str = "mlp"  # the network family: a key of gradlab.networks.NETWORKS
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
    batch_size: int = 100  # 0: the whole training set as one batch (full-batch gradient descent)
    seed: int = 0
    replicas: int = 1  # R > 1: seeds seed..seed+R-1 trained as one batched network
    log_every: int = 5
    eval_every: int = 0  # the full train and test sets' loss and score every this many steps too; 0: epoch ends only
    clip_grad_norm: float | None = None
    loss: str | None = None
    device: str = "cpu"
    dtype: str = "float32"  # float64: the network, its data and its training in double precision
    data_dir: str = "data"
    cell: str = "vanilla"  # net=rnn: vanilla | lstm
    recurrent_init: str = "orthogonal"  # net=rnn: W's init, any of init's, or identity (the IRNN)
    recurrent_gain: float = 1.0  # net=rnn: multiplies W
    forget_bias: float = 1.0  # net=rnn, cell=lstm: the forget gate's bias at init
    readout: str = "last"  # net=rnn: the logits from h_T (last), or from every h_t (every: dataset=copy)
    skip_completed: bool = False  # re-running a sweep: skip jobs whose record says completed
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    jacobian: JacobianConfig = field(default_factory=JacobianConfig)
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="gradlab_schema", node=Config)


class ConfigError(ValueError):
    """A bad config value: the message names the key, the bad value and what is allowed."""


def loss_name(cfg: DictConfig | Config) -> str:
    """The loss in force: `loss` when given, else the data set's own."""
    return cfg.loss if cfg.loss is not None else cfg.dataset.loss


def input_length(cfg: DictConfig | Config) -> float | None:
    """dataset.q0 as a number: None (as standardized), as given, or for q_star the length map's fixed point q* at
    the hidden layers' sigma_w^2 and sigma_b^2 (validation checks that it is finite and nonzero)."""
    if cfg.dataset.q0 != Q_STAR:
        return None if cfg.dataset.q0 is None else float(cfg.dataset.q0)
    sigma_w2, sigma_b2 = weight_scale(cfg.init, cfg.width, cfg.width, cfg.init_gain), cfg.bias_std**2
    return length_fixed_point(cfg.activation, sigma_w2, sigma_b2)


def train_settings(cfg: DictConfig | Config) -> TrainSettings:
    """The training loop's settings from a (validated) config."""
    opt = cfg.optimizer
    return TrainSettings(lr=cfg.lr, momentum=cfg.momentum, clip_grad_norm=cfg.clip_grad_norm, epochs=cfg.epochs,
                         batch_size=cfg.batch_size, log_every=cfg.log_every, eval_every=cfg.eval_every,
                         optimizer=opt.name, beta1=opt.beta1,
                         beta2=opt.beta2, eps=opt.eps, jacobian_examples=cfg.jacobian.examples,
                         jacobian_every_epoch=cfg.jacobian.every_epoch, curvature_every=cfg.curvature.every,
                         curvature_examples=cfg.curvature.examples)


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
