"""Every semantic check of a config, in one place: `validate` before the data loads, `validate_data` once it has.
Each error is one ConfigError that names the key, the bad value and what is allowed."""

import functools
import math

import torch
from omegaconf import DictConfig

from gradlab.activations import ACTIVATIONS
from gradlab.architecture import ARCHS
from gradlab.config import (
    DATASET_OPTIONS,
    Q_STAR,
    Config,
    ConfigError,
    DatasetConfig,
    OptimizerConfig,
    check_known_keys,
    input_length,
    loss_name,
)
from gradlab.data import DATASETS, TOY_KINDS, Split
from gradlab.inits import INITS
from gradlab.layers import NORM_CHOICES
from gradlab.losses import LOSSES
from gradlab.networks import NETWORKS
from gradlab.rnn import GATES, READOUTS
from gradlab.theory import weight_scale
from gradlab.train import OPTIMIZERS

LOGGER_MODES = ("offline", "online", "disabled")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")


def one_of(key: str, value: object, allowed: object) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; expected one of: {', '.join(map(str, allowed))}")


def _at_least(key: str, value: float, low: float, strict: bool = False) -> None:
    if value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ConfigError(f"{key}={value!r} is not allowed; expected a number {bound}")


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
    if options.seq_len is not None:
        _at_least("dataset.seq_len", options.seq_len, 2)
        _at_least("dataset.n_train", options.n_train, 1)
        _at_least("dataset.n_test", options.n_test, 1)


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
    if cfg.norm == "batchnorm" and cfg.batch_size == 1:
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
    _at_least("batch_size", cfg.batch_size, 0)  # 0: the whole training set as one batch (full-batch descent)
    _at_least("epochs", cfg.epochs, 0)
    _at_least("log_every", cfg.log_every, 1)
    _at_least("eval_every", cfg.eval_every, 0)
    _at_least("replicas", cfg.replicas, 1)
    _at_least("init_gain", cfg.init_gain, 0, strict=True)
    _at_least("bias_std", cfg.bias_std, 0)
    _at_least("jacobian.examples", cfg.jacobian.examples, 0)
    _at_least("curvature.every", cfg.curvature.every, 0)
    _at_least("curvature.examples", cfg.curvature.examples, 1)
    if cfg.curvature.every and cfg.replicas > 1:
        raise ConfigError(f"curvature.every={cfg.curvature.every} with replicas={cfg.replicas} is not allowed: the "
                          "sharpness is measured for one network; expected replicas=1")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum={cfg.momentum!r} is not allowed; expected a number in [0, 1)")
    if cfg.clip_grad_norm is not None:
        _at_least("clip_grad_norm", cfg.clip_grad_norm, 0, strict=True)
    validate_architecture(cfg)
    validate_optimizer(cfg.optimizer)
    one_of("activation", cfg.activation, list(ACTIVATIONS))
    one_of("init", cfg.init, list(INITS))
    validate_dataset(cfg.dataset)
    validate_family(cfg)
    validate_input_length(cfg)
    one_of("loss", loss_name(cfg), list(LOSSES))
    one_of("logger.mode", cfg.logger.mode, LOGGER_MODES)
    one_of("device", cfg.device, DEVICES)
    one_of("dtype", cfg.dtype, DTYPES)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' is not available on this machine; expected one of: cpu")
    if DATASETS[cfg.dataset.name].regression and loss_name(cfg) != "mse":
        raise ConfigError(f"loss={loss_name(cfg)!r} does not fit dataset={cfg.dataset.name!r}, whose targets are "
                          "numbers; expected one of: mse")
    needs = LOSSES[loss_name(cfg)].n_classes
    has = DATASETS[cfg.dataset.name].n_classes
    if needs is not None and needs != has:
        fitting = [name for name, loss in LOSSES.items() if loss.n_classes in (None, has)]
        raise ConfigError(
            f"loss={loss_name(cfg)!r} needs a {needs}-class data set, but dataset={cfg.dataset.name!r} "
            f"has {has} classes; expected one of: {', '.join(fitting)}"
        )



def validate_input_length(cfg: DictConfig | Config) -> None:
    """dataset.q0=q_star needs a finite nonzero fixed point of the length map."""
    if cfg.dataset.q0 == Q_STAR and not 0 < input_length(cfg) < math.inf:
        sigma_w2, sigma_b2 = weight_scale(cfg.init, cfg.width, cfg.width, cfg.init_gain), cfg.bias_std**2
        raise ConfigError(f"dataset.q0={Q_STAR}: activation={cfg.activation} at sigma_w^2={sigma_w2:.4g}, "
                          f"sigma_b^2={sigma_b2:.4g} has no finite nonzero fixed point q*; expected a number")


def validate_data(cfg: DictConfig | Config, split: Split) -> None:
    """The checks that need the loaded data: batch norm's last mini-batch must hold two examples or more."""
    if cfg.norm == "batchnorm" and cfg.batch_size and len(split.x_train) % cfg.batch_size == 1:
        raise ConfigError(f"norm='batchnorm' with batch_size={cfg.batch_size} leaves a last mini-batch of one of the "
                          f"{len(split.x_train)} training examples, which has no variance; choose another batch_size")


def value_at(cfg: DictConfig | Config, key: str) -> object:
    """A dotted key's value (dataset.q0)."""
    return functools.reduce(getattr, key.split("."), cfg)


def validate_family(cfg: DictConfig | Config) -> None:
    """The network family exists; every key only another family reads is left at its default; the data set's
    examples are what the family takes (sequences for an RNN); and the RNN's own keys are valid."""
    one_of("net", cfg.net, list(NETWORKS))
    family, defaults = NETWORKS[cfg.net], Config()
    for other, entry in NETWORKS.items():
        for key in (k for k in entry.keys if k not in family.keys):
            if value_at(cfg, key) != value_at(defaults, key):
                raise ConfigError(f"{key}={value_at(cfg, key)!r} does not apply to net={cfg.net}: only net={other} "
                                  f"reads it; leave it at its default ({value_at(defaults, key)!r})")
    if DATASETS[cfg.dataset.name].sequence != family.sequence:
        fitting = [name for name, data in DATASETS.items() if data.sequence == family.sequence]
        kind = "sequences" if family.sequence else "vectors"
        raise ConfigError(f"dataset={cfg.dataset.name!r} does not fit net={cfg.net}, which reads {kind}; "
                          f"expected one of: {', '.join(fitting)}")
    if cfg.net == "rnn":
        validate_recurrent(cfg)


def validate_recurrent(cfg: DictConfig | Config) -> None:
    one_of("cell", cfg.cell, list(GATES))
    one_of("recurrent_init", cfg.recurrent_init, [*INITS, "identity"])
    _at_least("recurrent_gain", cfg.recurrent_gain, 0, strict=True)
    one_of("readout", cfg.readout, list(READOUTS))
    per_step = DATASETS[cfg.dataset.name].per_step
    if per_step != (cfg.readout == "every"):
        has = "a target at every time step" if per_step else "one target per sequence"
        raise ConfigError(f"readout={cfg.readout!r} does not fit dataset={cfg.dataset.name!r}, which has {has}; "
                          f"expected readout={'every' if per_step else 'last'}")
    if cfg.cell == "lstm" and cfg.activation != Config().activation:
        raise ConfigError(f"activation={cfg.activation!r} does not apply to cell='lstm': its nonlinearities are "
                          "fixed (sigmoid gates, tanh); leave activation out, or use cell=vanilla")
