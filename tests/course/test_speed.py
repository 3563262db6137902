"""course/speed.py: the fast paths compute what the plain model computes, and the choice is timed once, then cached."""
import json

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


def test_candidates_follow_the_precision_asked_for(monkeypatch):
    monkeypatch.setattr(speed, "native_bf16", lambda device: False)
    assert {c.precision for c in speed.candidates(CPU, "auto")} == {"fp32"}  # no bf16 hardware: not even tried
    assert {c.precision for c in speed.candidates(CPU, "bf16")} == {"bf16"}
    monkeypatch.setattr(speed, "native_bf16", lambda device: True)
    assert {c.precision for c in speed.candidates(CPU, "auto")} == {"fp32", "bf16"}
    assert {c.precision for c in speed.candidates(CPU, "fp32")} == {"fp32"}
    assert {c.matmul_1x1 for c in speed.candidates(CPU, "auto")} == {True, False}


def test_choice_is_measured_once_then_cached_and_retune_measures_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    rates = {"fp32, NCHW": 100.0, "fp32, channels_last": 150.0, "fp32, channels_last, 1x1 convs as matmuls": 120.0}
    timed = []

    def fake_rate(model, config, batch_size, training, device, too_slow=None):
        timed.append(config)
        return rates[config.describe()]

    monkeypatch.setattr(speed, "images_per_second", fake_rate)
    monkeypatch.setattr(speed, "native_bf16", lambda device: False)
    first = speed.choose("resnet50", 10, 8, True, CPU)
    assert first.config == speed.Config("fp32", True, False) and first.speedup == pytest.approx(1.5)
    assert first.how.startswith("measured in") and len(timed) == 3
    assert first.line().startswith("Speed (training): fp32, channels_last (1.50x the course's fp32 NCHW here; measured")
    assert "bf16 not tried" in first.line()
    second = speed.choose("resnet50", 10, 8, True, CPU)
    assert second.config == first.config and second.how == "cached" and len(timed) == 3
    assert speed.choose("resnet50", 10, 8, False, CPU).how.startswith("measured")  # evaluation is its own key
    rates["fp32, NCHW"] = 400.0  # the course's way won this time: it is never beaten by a slower choice
    assert speed.choose("resnet50", 10, 8, True, CPU, retune=True).config == speed.COURSE_WAY


def test_a_model_without_1x1_convolutions_is_not_timed_with_them_as_matmuls(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    timed = []

    def fake_rate(model, config, batch_size, training, device, too_slow=None):
        timed.append(config)
        return 100.0 + 10 * config.matmul_1x1  # the matmul variant would win if it were timed

    monkeypatch.setattr(speed, "images_per_second", fake_rate)
    monkeypatch.setattr(speed, "native_bf16", lambda device: False)
    choice = speed.choose("vgg16", 10, 4, False, CPU)
    assert not any(config.matmul_1x1 for config in timed) and not choice.config.matmul_1x1
    assert "matmuls" not in choice.line()
    assert speed.choose("resnet50", 10, 4, False, CPU).config.matmul_1x1  # ResNet-50 has them: still tried


def test_a_damaged_cache_is_measured_again_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    speed.cache_path().parent.mkdir(parents=True)
    speed.cache_path().write_text("{not json")
    monkeypatch.setattr(speed, "images_per_second", lambda *args, **kwargs: 10.0)
    assert speed.choose("resnet50", 10, 4, True, CPU).how.startswith("measured")
    assert json.loads(speed.cache_path().read_text())["version"] == speed.CACHE_VERSION


def test_real_timing_of_a_tiny_batch_gives_a_rate():
    assert speed.images_per_second(ResNet50(), speed.Config("fp32", True, True), 2, True, CPU) > 0


def test_unknown_precision_is_a_user_error():
    with pytest.raises(speed.cli.UserError, match="unknown precision"):
        speed.choose("resnet50", 10, 4, True, CPU, precision="fp8")
