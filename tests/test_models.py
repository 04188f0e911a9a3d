"""Every registered model: shapes, parameter counts, no NaN, one step of each optimizer lowers the loss."""

import pytest
import torch
import torch.nn.functional as F

from al_core.models import MODELS, LossNet, loss_pred_loss, scoring_model
from al_core.optim import OPTIMIZERS, make_optimizer, make_scheduler
from al_core.registry import optimizer_params

# Parameter counts of the CIFAR ResNets at width 64 with 10 classes (the study's models).
EXPECTED_PARAMS = {"resnet18": 11_173_962, "resnet34": 21_282_122, "resnet50": 23_520_842}


@pytest.mark.parametrize("name", MODELS.names())
def test_parameter_count_at_width_64(name):
    model = MODELS.get(name)(num_classes=10, in_channels=3, width=64)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 8)])
def test_forward_shapes_and_finite(name, channels, size):
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=7, in_channels=channels, width=4)
    logits, feats = model(torch.randn(5, channels, size, size))
    assert logits.shape == (5, 7)
    assert len(feats) == 4
    assert [f.shape[1] for f in feats] == model.stage_channels
    assert feats[0].shape[-1] == size  # stride-1 stem, no max-pool
    assert torch.isfinite(logits).all()
    pred = LossNet(model.stage_channels, 16)(feats)
    assert pred.shape == (5,) and torch.isfinite(pred).all()


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("opt_name", OPTIMIZERS.names())
def test_one_step_lowers_loss_on_fixed_batch(name, opt_name):
    torch.manual_seed(1)
    model = MODELS.get(name)(num_classes=10, in_channels=3, width=4)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    # The default lr at a tenth: SGD's peak lr of 0.1 can overshoot in one step from a random init.
    hparams = optimizer_params(opt_name, {}, "optim")
    hparams["lr"] *= 0.1
    opt = make_optimizer(opt_name, list(model.parameters()), hparams, torch.device("cpu"))
    model.train()
    before = F.cross_entropy(model(x)[0], y)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = F.cross_entropy(model(x)[0], y)
    assert torch.isfinite(after)
    assert after.item() < before.item()


def test_optimizer_defaults_differ_per_optimizer():
    lrs = {n: OPTIMIZERS.get(n).defaults["lr"] for n in OPTIMIZERS.names()}
    assert lrs["sgd"] == 0.1 and lrs["adam"] < 0.01 and lrs["adamw"] < 0.01 and lrs["rmsprop"] < 0.01


def test_multistep_milestones_are_fractions_of_epochs():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_scheduler(opt, "multistep", 200, (0.8,), 0.1)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[159] == pytest.approx(0.1) and lrs[160] == pytest.approx(0.01)


def test_loss_pred_loss_matches_hand_computation():
    pred = torch.tensor([0.5, 2.0, 1.0, 0.0, 3.0])  # odd batch: the last sample is left out
    true = torch.tensor([1.0, 0.5, 2.0, 3.0, 9.0])
    # pairs (0,3) and (1,2): true diffs 1-3=-2 (sign -1), 0.5-2=-1.5 (sign -1)
    # pred diffs 0.5-0=0.5, 2-1=1; loss = mean(max(0, 1 + 0.5), max(0, 1 + 1)) = (1.5 + 2) / 2
    assert loss_pred_loss(pred, true, margin=1.0).item() == pytest.approx(1.75)
    # a correct ranking by more than the margin costs nothing
    assert loss_pred_loss(torch.tensor([5.0, 0.0]), torch.tensor([2.0, 1.0]), 1.0).item() == 0.0


@pytest.mark.parametrize("name", MODELS.names())
def test_scoring_on_a_cpu_folds_every_batchnorm_and_keeps_the_function(name):
    """The CPU scoring copy (issue 26): no BatchNorm left, the same outputs up to float rounding,
    the trained model itself untouched."""
    torch.manual_seed(2)
    model = MODELS.get(name)(num_classes=10, in_channels=3, width=4)
    model.train()
    with torch.no_grad():  # BatchNorm statistics away from their initial 0 / 1
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = scoring_model(model)
    assert net is not model and not net.training and not model.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        (want, want_f), (got, got_f) = model(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for g, w in zip(got_f, want_f):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0


def test_a_model_the_project_does_not_know_is_scored_as_it_is():
    class Plugin(torch.nn.Module):  # a BatchNorm it might apply in any order: left alone
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

    model = Plugin()
    assert scoring_model(model) is model and not model.training
