"""train.cuda_graphs defaults to auto: CUDA graphs wherever CUDA is (unless compile or dropout asks
for eager steps); a capture that fails trains eagerly with one warning line."""

from __future__ import annotations

import copy

import pytest
import torch

from al_core import train as train_mod
from al_core.config import load_sweep
from al_core.errors import ConfigError
from al_core.models import MODELS, LossNet
from al_core.train import GraphedStep, train_step


def test_auto_is_the_default_and_means_graphs_unless_compile_or_dropout(smoke_yaml):
    cfg = lambda *o: load_sweep(smoke_yaml, list(o)).runs()[0].config.train  # noqa: E731
    assert cfg().cuda_graphs == "auto" and cfg().graphs
    assert not cfg("train.dropout=0.2").graphs and not cfg("train.compile=true").graphs
    assert not cfg("train.cuda_graphs=false").graphs and cfg("train.cuda_graphs=true").graphs
    assert "cuda_graphs" not in load_sweep(smoke_yaml).runs()[0].config.to_dict()["train"]  # auto: not recorded
    with pytest.raises(ConfigError, match="train.cuda_graphs: expected auto, true or false"):
        load_sweep(smoke_yaml, ["train.cuda_graphs=sometimes"]).runs()
    with pytest.raises(ConfigError, match="train.cuda_graphs"):
        load_sweep(smoke_yaml, ["train.cuda_graphs=true", "train.dropout=0.2"]).runs()


def test_a_failed_capture_trains_eagerly_as_train_step_with_one_warning(monkeypatch, capsys):
    monkeypatch.setattr(train_mod, "_CAPTURE_WARNED", False)
    monkeypatch.setattr(GraphedStep, "_capture", lambda self, x, y, d: (_ for _ in ()).throw(RuntimeError("capture\nrefused")))
    torch.manual_seed(0)
    model = MODELS.get("resnet18")(width=4)
    lossnet = LossNet(model.stage_channels, 8)
    twins = copy.deepcopy((model, lossnet))
    params = lambda m, n: list(m.parameters()) + list(n.parameters())  # noqa: E731
    opt = torch.optim.SGD(params(model, lossnet), lr=0.1, momentum=0.9)
    opt_eager = torch.optim.SGD(params(*twins), lr=0.1, momentum=0.9)
    step = GraphedStep(model, lossnet, opt, 16, 1.0, 1.0, "fp32")
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
        got = step(x, y, False)
        want = train_step(*twins, opt_eager, x, y, False, 1.0, 1.0, step.amp)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for a, b in zip(model.state_dict().values(), twins[0].state_dict().values()):
        assert torch.equal(a, b)
    err = capsys.readouterr().err.splitlines()
    assert step.failed and step.replays == 0
    assert err == ["warning: CUDA graph capture failed (RuntimeError: capture refused); training eagerly"]
