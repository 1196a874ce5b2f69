"""Config: every group composes, a typo'd key fails, and every bad value gets one clear line."""

from pathlib import Path

import pytest

from conftest import CONF, compose_config, run_cli
from gradlab.activations import ACTIVATIONS
from gradlab.config import DATASET_OPTIONS as DATASET_FIELDS
from gradlab.config import ConfigError, config_keys, loss_name, schema_keys
from gradlab.data import DATASETS
from gradlab.experiment import prepare
from gradlab.inits import INITS
from gradlab.validation import validate

DATASET_OPTIONS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))


def test_dataset_group_matches_dataset_registry():
    assert DATASET_OPTIONS == sorted(DATASETS)


@pytest.mark.parametrize("dataset", DATASET_OPTIONS)
def test_every_dataset_option_composes_and_validates(dataset):
    net = "rnn" if DATASETS[dataset].sequence else "mlp"  # sequence data sets are read by a recurrent network
    every = ["readout=every"] if DATASETS[dataset].per_step else []  # a target at every step
    cfg = compose_config(f"dataset={dataset}", f"net={net}", *every)
    validate(cfg)
    assert cfg.dataset.name == dataset
    assert loss_name(cfg) == {"toy": "bce", "adding": "mse"}.get(dataset, "cross_entropy")


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_composes(activation):
    validate(compose_config(f"activation={activation}"))


@pytest.mark.parametrize("init", sorted(INITS))
def test_every_init_composes(init):
    validate(compose_config(f"init={init}"))


def test_defaults_are_the_documented_ones():
    cfg = compose_config()
    assert (cfg.depth, cfg.width, cfg.batch_size, cfg.dataset.name) == (10, 64, 100, "digits")
    assert cfg.logger.mode == "offline" and cfg.clip_grad_norm is None and cfg.device == "cpu"


def test_unknown_key_fails_at_compose():
    with pytest.raises(Exception, match="depht"):
        compose_config("depht=3")


BAD_INPUTS = [
    ("depth=0", ["depth=0", ">= 1"]),
    ("width=0", ["width=0", ">= 1"]),
    ("lr=0", ["lr=0", "> 0"]),
    ("lr=-0.5", ["lr=-0.5", "> 0"]),
    ("batch_size=-1", ["batch_size=-1", ">= 0"]),
    ("epochs=-1", ["epochs=-1", ">= 0"]),
    ("log_every=0", ["log_every=0", ">= 1"]),
    ("momentum=1.0", ["momentum=1.0", "[0, 1)"]),
    ("clip_grad_norm=0", ["clip_grad_norm=0", "> 0"]),
    ("activation=swish", ["activation='swish'", "sigmoid", "tanh", "relu"]),
    ("init=zeros", ["init='zeros'", "xavier_uniform", "kaiming_normal"]),
    ("dataset.name=cifar", ["dataset.name='cifar'", "digits", "mnist"]),
    ("loss=hinge", ["loss='hinge'", "cross_entropy", "bce"]),
    ("loss=bce", ["loss='bce'", "10 classes", "cross_entropy"]),
    ("logger.mode=cloud", ["logger.mode='cloud'", "offline", "disabled"]),
    ("device=tpu", ["device='tpu'", "cpu"]),
    ("dataset.test_fraction=1.0", ["dataset.test_fraction=1.0", "(0, 1)"]),
    ("dataset.test_fraction=0", ["dataset.test_fraction=0", "(0, 1)"]),
    ("dataset=toy dataset.noise=-0.1", ["dataset.noise=-0.1", ">= 0"]),
    ("dataset=toy dataset.kind=spiral", ["dataset.kind='spiral'", "moons", "xor"]),
    ("dataset=toy dataset.n_samples=1", ["dataset.n_samples=1", ">= 2"]),
    ("dataset=toy dataset.n_samples=4 dataset.test_fraction=0.9",
     ["dataset.n_samples=4", "test_fraction=0.9", "no training"]),
    ("dataset.noise=0.3", ["dataset.noise=0.3", "dataset=digits has no noise", "test_fraction"]),
    ("dataset=mnist dataset.test_fraction=0.5", ["dataset.test_fraction=0.5", "dataset=mnist", "none"]),
    ("dataset=toy dataset.kind=null", ["dataset.kind is not set", "dataset=toy"]),
    ("+detph=30", ["unknown config key 'detph'", "did you mean 'depth'"]),
    ("+dataset.nois=0.3", ["unknown config key 'dataset.nois'", "did you mean 'dataset.noise'"]),
    ("arch=foo", ["arch='foo'", "plain", "residual"]),
    ("norm=foo", ["norm='foo'", "none", "layernorm", "batchnorm"]),
    ("residual_scale=-1", ["residual_scale=-1", "> 0"]),
    ("arch=residual depth=1", ["arch='residual'", "depth=1", "depth >= 2"]),
    ("norm=batchnorm batch_size=1", ["norm='batchnorm'", "batch_size=1", "batch_size >= 2"]),
    ("optimizer=adam optimizer.beta2=1.0", ["optimizer.beta2=1.0", "[0, 1)"]),
    ("optimizer=adam optimizer.eps=0", ["optimizer.eps=0", "> 0"]),
    ("optimizer.name=rmsprop", ["optimizer.name='rmsprop'", "sgd", "adam"]),
    ("bias_std=-1", ["bias_std=-1", ">= 0"]),
    ("jacobian.examples=-3", ["jacobian.examples=-3", ">= 0"]),
]


@pytest.mark.parametrize(("override", "fragments"), BAD_INPUTS, ids=[o for o, _ in BAD_INPUTS])
def test_bad_input_is_rejected_with_key_value_and_allowed(override, fragments):
    cfg = compose_config(*override.split())
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("override", "fragments"),
    [("depth=0", ["depth=0", ">= 1"]), ("activation=swish", ["activation='swish'", "tanh"]),
     ("dataset.test_fraction=1.0", ["dataset.test_fraction=1.0", "(0, 1)"]),
     ("arch=residual depth=1", ["arch='residual'", "depth >= 2"])],
)
def test_bad_input_on_the_command_line_exits_with_one_line_and_no_record(workdir: Path, override, fragments):
    result = run_cli(*override.split(), "logger.mode=disabled", cwd=workdir)
    assert_one_line_error(result, *fragments)
    assert result.returncode == 2
    leftovers = [p for p in (workdir / "runs").rglob("*") if p.is_file()] if (workdir / "runs").exists() else []
    assert leftovers == []


@pytest.mark.parametrize("written", ["detph=30", "+detph=30", "++detph=30", "-m detph=2,30"])
def test_unknown_key_on_the_command_line_is_one_line_and_exit_2_however_written(workdir: Path, written):
    result = run_cli(*written.split(), "logger.mode=disabled", cwd=workdir)
    assert_one_line_error(result, "unknown config key 'detph'", "did you mean 'depth'")
    assert result.returncode == 2 and not (workdir / "runs").exists()


def test_unknown_config_group_option_is_one_line_and_exit_2(workdir: Path):
    result = run_cli("dataset=tyo", "logger.mode=disabled", cwd=workdir)
    assert_one_line_error(result, "dataset='tyo'", "digits", "toy")
    assert result.returncode == 2


@pytest.mark.parametrize("dataset", DATASET_OPTIONS)
def test_each_dataset_sets_exactly_the_options_its_loader_reads(dataset):
    options = compose_config(f"dataset={dataset}").dataset
    assert [key for key in DATASET_FIELDS if options[key] is not None] == list(DATASETS[dataset].options)


def test_every_composed_key_is_in_the_schema():
    cfg = compose_config()
    assert set(config_keys(cfg)) <= set(schema_keys())
    assert "dataset.noise" in schema_keys() and "optimizer.beta1" in schema_keys()


def test_batchnorm_with_a_last_mini_batch_of_one_is_rejected_before_any_record(tmp_path: Path):
    """digits trains on 1,438 examples: batch_size=3 leaves a last batch of one, which has no variance."""
    cfg = compose_config("norm=batchnorm", "batch_size=3")
    validate(cfg)
    with pytest.raises(ConfigError, match="last mini-batch of one"):
        prepare(cfg)


@pytest.mark.parametrize("value", ["-1", "0", "abc", "true"])
def test_bad_input_length_is_rejected(value):
    with pytest.raises(ConfigError, match=r"dataset.q0=.*expected null, a number > 0, or q_star"):
        validate(compose_config(f"dataset.q0={value}"))


def test_input_length_q_star_needs_a_finite_fixed_point():
    """ReLU above sigma_w^2 = 2 has none: its length grows without bound."""
    with pytest.raises(ConfigError, match="no finite nonzero fixed point"):
        prepare(compose_config("activation=relu", "init=kaiming_normal", "init_gain=1.5", "dataset.q0=q_star"))


@pytest.mark.parametrize(("overrides", "words"), [
    (["net=rnn", "dataset=seq_digits", "depth=30"], ["depth=30", "net=rnn", "only net=mlp"]),
    (["net=rnn", "dataset=seq_digits", "arch=residual"], ["arch='residual'", "net=rnn"]),
    (["cell=lstm"], ["cell='lstm'", "net=mlp", "only net=rnn"]),
    (["net=rnn"], ["dataset='digits'", "net=rnn", "seq_digits"]),
    (["dataset=seq_digits"], ["dataset='seq_digits'", "net=mlp", "digits, toy"]),
    (["net=rnn", "dataset=seq_digits", "cell=lstm", "activation=relu"], ["activation='relu'", "cell='lstm'"]),
    (["net=rnn", "dataset=seq_digits", "recurrent_init=eye"], ["recurrent_init='eye'", "identity"]),
    (["net=rnn", "dataset=seq_digits", "readout=every"], ["readout='every'", "one target per sequence",
                                                          "readout=last"]),
    (["net=rnn", "dataset=copy"], ["readout='last'", "dataset='copy'", "every time step", "readout=every"]),
    (["net=rnn", "dataset=copy", "readout=all"], ["readout='all'", "last, every"]),
    (["net=rnn", "dataset=seq_digits", "recurrent_gain=0"], ["recurrent_gain=0", "> 0"]),
    (["net=rnn", "dataset=adding", "loss=cross_entropy"], ["loss='cross_entropy'", "numbers", "mse"]),
    (["net=rnn", "dataset=adding", "dataset.seq_len=1"], ["dataset.seq_len=1", ">= 2"]),
    (["curvature.every=5", "replicas=2"], ["curvature.every=5", "replicas=2", "replicas=1"]),
    (["curvature.examples=0"], ["curvature.examples=0", ">= 1"]),
])
def test_a_key_or_data_set_of_the_other_network_family_is_rejected(overrides, words):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*overrides))
    assert all(word in str(error.value) for word in words), str(error.value)


def test_an_rnn_config_with_its_own_keys_validates():
    validate(compose_config("net=rnn", "dataset=seq_digits", "cell=lstm", "recurrent_init=identity",
                            "recurrent_gain=0.5", "dataset.rows=true"))
    validate(compose_config("net=rnn", "dataset=copy", "readout=every", "dataset.seq_len=5"))
