"""Seed replicas: R copies trained as one batched network agree with R separate runs."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import compose_config
from gradlab.config import train_settings
from gradlab.experiment import Job, prepare, run_job, train_recorded
from gradlab.losses import LOSSES
from gradlab.mlp import MLP
from gradlab.train import train
from gradlab.wandb_helper import wandb_key


def trained_rows(*overrides: str) -> pd.DataFrame:
    cfg = compose_config(*overrides)
    setup = prepare(cfg)
    seen = []
    train(setup.net, setup.loss, setup.split, train_settings(cfg), seen.append)
    rows = [(m.replica, m.step, layer, name, value) for m in seen for layer, _, name, value in m.rows]
    return pd.DataFrame(rows, columns=["replica", "step", "layer", "name", "value"]).fillna({"layer": 0})


REPLICA_CASES = {"tanh": ("tanh", ()), "relu": ("relu", ()),
                 "tanh residual+batchnorm+adam": ("tanh", ("arch=residual", "norm=batchnorm", "optimizer=adam")),
                 "relu residual+layernorm": ("relu", ("arch=residual", "norm=layernorm", "residual_scale=0.5"))}


@pytest.mark.parametrize(("activation", "remedy"), REPLICA_CASES.values(), ids=REPLICA_CASES.keys())
def test_each_replica_agrees_with_a_separate_run_of_its_seed(activation, remedy):
    common = ("epochs=2", "depth=4", "width=32", f"activation={activation}", "log_every=3", *remedy)
    batched = trained_rows(*common, "seed=5", "replicas=3")
    for r in range(3):
        alone = trained_rows(*common, f"seed={5 + r}")
        mine = batched[batched.replica == r].drop(columns="replica").reset_index(drop=True)
        alone = alone.drop(columns="replica").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine.drop(columns="value"), alone.drop(columns="value"))
        torch.testing.assert_close(torch.tensor(mine.value.values), torch.tensor(alone.value.values),
                                   rtol=1e-5, atol=1e-7)


def test_replicas_start_from_their_own_seeds():
    net = MLP([5, 6, 3], init="xavier_normal", replicas=3, seed=10)
    assert net.weights[0].shape == (3, 5, 6) and net.biases[0].shape == (3, 6)
    for r in range(3):
        alone = MLP([5, 6, 3], init="xavier_normal", seed=10 + r)
        assert torch.equal(net.weights[0][r], alone.weights[0]) and torch.equal(net.weights[1][r], alone.weights[1])


def test_batched_backward_equals_each_replicas_own_backward():
    net = MLP([4, 5, 5, 3], activation="tanh", dtype=torch.float64, seed=0, replicas=2)
    x = torch.randn(2, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (2, 7), generator=torch.Generator().manual_seed(2))
    ce = LOSSES["cross_entropy"]
    grads = net.backward(ce.value_and_grad(net.forward(x), y)[1] / 7)
    for r in range(2):
        alone = MLP([4, 5, 5, 3], activation="tanh", dtype=torch.float64, seed=r)
        own = alone.backward(ce.value_and_grad(alone.forward(x[r]), y[r])[1] / 7)
        for grad, grad_r in zip(grads, own, strict=True):
            torch.testing.assert_close(grad[r], grad_r, rtol=1e-12, atol=1e-14)


def test_a_diverging_replica_is_frozen_while_the_others_train_on():
    cfg = compose_config("epochs=2", "depth=3", "activation=relu", "replicas=3")
    setup = prepare(cfg)
    for w in setup.net.weights:
        w[1] *= 1e30  # replica 1 overflows on its first batch
    seen = []
    result = train(setup.net, setup.loss, setup.split, train_settings(cfg), seen.append)
    assert result.status == "completed" and result.replica_diverged_at == (None, 0, None)
    assert max(m.step for m in seen if m.replica == 1) == 0
    assert max(m.step for m in seen if m.replica in (0, 2)) == result.steps == 30
    assert all(torch.isfinite(w[0]).all() and torch.isfinite(w[2]).all() for w in setup.net.weights)
    assert all(torch.equal(p[1], torch.zeros_like(p[1])) for p in setup.net.weights + setup.net.biases)
    last = {name: value for layer, _, name, value in next(m for m in seen if m.replica == 1 and not m.epoch_end).rows
            if layer == 1}
    assert last["weight_norm"] > 1e20  # its record shows the weights it diverged with, not the frozen zeros


def test_replica_run_record_has_a_replica_column_and_per_replica_summary(tmp_path: Path):
    cfg = compose_config("epochs=1", "depth=3", "replicas=2", "seed=7", "logger.mode=disabled")
    run_job(cfg, Job(tmp_path, "replicas"))
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    assert list(metrics.columns) == ["replica", "step", "epoch", "layer", "time", "name", "value"]
    assert metrics["time"].isna().all()  # an MLP has no time steps
    assert sorted(metrics.replica.unique()) == [0, 1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["replica"], r["seed"], r["status"]) for r in summary["replicas"]] == [(0, 7, "completed"),
                                                                                    (1, 8, "completed")]
    mean = sum(r["final_test_loss"] for r in summary["replicas"]) / 2
    assert summary["final_test_loss"] == pytest.approx(mean)


def test_wandb_keys_carry_the_replica_in_replica_runs():
    assert wandb_key(7, "grad_norm", 2) == "grad_norm/layer_07/replica_2"
    assert wandb_key(None, "test_loss", 0) == "test_loss/replica_0"


def test_summary_finals_are_means_over_the_replicas_that_did_not_diverge(tmp_path: Path):
    cfg = compose_config("epochs=1", "depth=3", "activation=relu", "replicas=3", "logger.mode=disabled")
    setup = prepare(cfg)
    for w in setup.net.weights:
        w[1] *= 1e30  # replica 1 overflows on its first batch
    train_recorded(cfg, setup, Job(tmp_path, "one diverges"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["replicas_diverged"]) == ("completed", 1)
    metrics = pd.read_parquet(tmp_path / "metrics.parquet").query("name == 'test_accuracy'")
    last = metrics.sort_values("step").groupby("replica").value.last()
    assert summary["final_test_accuracy"] == pytest.approx((last[0] + last[2]) / 2, rel=1e-12)
    assert summary["final_test_accuracy"] != pytest.approx(last.mean(), rel=1e-6)
