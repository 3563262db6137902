"""course/speed.py: the fast paths compute what the plain model computes, and the rules pick as measured."""
import pytest
import torch

from course import speed
from resnet import ResNet50

CPU = torch.device("cpu")


def test_matmul_1x1_convolutions_give_the_same_result_and_switch_back():
    torch.manual_seed(0)
    plain = ResNet50().eval()
    fast = ResNet50().eval()
    fast.load_state_dict(plain.state_dict())
    speed.prepare(fast, CPU, speed.Config("fp32", channels_last=True, matmul_1x1=True))
    # 13 blocks x (two 1x1 in the branch + the shortcut)
    assert sum(type(m) is speed.MatmulConv1x1 for m in fast.modules()) == 39
    assert fast.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, got = plain(x), fast(x)
    # the same float32 sums in another order: each of ~50 layers may differ by at most (terms summed <= 2^11) * 2^-24
    # of its output's size, so 1e-3 of the logits' size bounds them on any CPU; a wrong weight would be of order 1
    assert torch.allclose(got, expected, rtol=0, atol=1e-3 * expected.abs().max().item())
    speed.prepare(fast, CPU, speed.COURSE_WAY)
    assert not any(type(m) is speed.MatmulConv1x1 for m in fast.modules())


def test_bf16_autocast_is_on_only_for_bf16():
    with speed.autocast(CPU, speed.Config("bf16", True, False)):
        assert torch.is_autocast_enabled("cpu")
    with speed.autocast(CPU, speed.Config("fp32", True, True)):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("native,precision,training,expected", [
    (True, "auto", True, speed.Config("bf16", True, True)),  # docs/speed.md: measured on Zen 4
    (True, "auto", False, speed.Config("bf16", True, False)),  # matmuls are slow in bf16 evaluation
    (True, "fp32", False, speed.Config("fp32", True, True)),
    (False, "auto", True, speed.Config("fp32", True, True)),  # measured on Zen 3
    (False, "auto", False, speed.Config("fp32", True, True)),
    (False, "bf16", True, speed.Config("bf16", True, True)),  # asked for: given, even where it is slow
])
def test_the_rules_pick_what_was_measured_fastest(native, precision, training, expected, monkeypatch):
    monkeypatch.setattr(speed, "native_bf16", lambda device: native)
    monkeypatch.setattr(speed.platform, "machine", lambda: "x86_64")
    choice = speed.choose("resnet50", training, CPU, precision)
    assert choice.config == expected
    assert ("computes bf16 natively" if native else "has no native bf16") in choice.line()


def test_no_matmuls_for_a_model_without_1x1_convolutions_and_the_course_s_layout_on_unmeasured_cpus(monkeypatch):
    monkeypatch.setattr(speed, "native_bf16", lambda device: False)
    monkeypatch.setattr(speed.platform, "machine", lambda: "x86_64")
    assert speed.choose("vgg16", True, CPU).config == speed.Config("fp32", True, False)
    assert "matmuls" not in speed.choose("vgg16", True, CPU).line()
    monkeypatch.setattr(speed.platform, "machine", lambda: "aarch64")
    choice = speed.choose("resnet50", True, CPU)
    assert choice.config == speed.COURSE_WAY and "no aarch64 CPU measured yet" in choice.line()


def test_unknown_precision_is_a_user_error():
    with pytest.raises(speed.UserError, match="unknown precision"):
        speed.choose("resnet50", True, CPU, precision="fp8")


def test_folding_the_batch_norms_keeps_the_outputs_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = ResNet50().eval()
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics of a trained model
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.uniform_(0.5, 1.5)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folded = speed.fold_batch_norms(model)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 0  # all 53 follow a convolution
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 53
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    # float32 rounding of a weight scaled once per layer, through ~50 layers: 1e-3 of the logits' size (as above)
    assert torch.allclose(got, expected, rtol=0, atol=1e-3 * expected.abs().max().item())


def test_a_batch_norm_that_does_not_follow_a_convolution_stays():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.BatchNorm2d(4)).eval()
    assert isinstance(speed.fold_batch_norms(model)[2], torch.nn.BatchNorm2d)
