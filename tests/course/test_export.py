"""course/export.py: scaling the convolutions up leaves the model's function and the file's layout unchanged."""
import torch
import torch.nn as nn

from course import models
from course.export import conv_bn_pairs, scale_up_convolutions, undo_scale_up
from resnet import ResNet50


def trained_like(seed: int = 0) -> nn.Module:
    """A ResNet-50 in eval mode with the tiny weights and spread-out statistics of a model trained with weight
    decay: convolutions at RMS ~0.005, running variances from 1e-6 to 1e2 (so that eps = 1e-5 matters)."""
    torch.manual_seed(seed)
    model = ResNet50(10)
    with torch.no_grad():
        for conv, norm in conv_bn_pairs(model):
            conv.weight.mul_(0.005 / conv.weight.pow(2).mean().sqrt())
            conv.bias.normal_(0, 0.001)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.1)
            norm.running_mean.normal_(0, 0.01)
            norm.running_var.copy_(10 ** torch.empty_like(norm.running_var).uniform_(-6, 2))
    return model.eval()


def test_every_convolution_of_the_resnet_feeds_a_batch_norm():
    model = ResNet50(10)
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(conv_bn_pairs(model)) == len(convolutions) == 53


def test_scaling_up_keeps_the_outputs_and_the_file_layout(tmp_path):
    model = trained_like()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(images)
    layout = {key: (value.shape, value.dtype) for key, value in model.state_dict().items()}
    factors = scale_up_convolutions(model)
    with torch.no_grad():
        after = model(images)
    assert len(factors) == 53 and min(factors) >= 1 and max(factors) > 10  # it did scale
    # float32 rounding: each of ~50 layers adds a relative error of a few 1e-7
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4 * before.abs().max().item())
    assert {key: (value.shape, value.dtype) for key, value in model.state_dict().items()} == layout
    path = tmp_path / "scaled.pt"
    models.save_checkpoint(path, model, {"arch": "resnet50", "num_classes": 10,
                                         "classes": ["c"] * 10}, half=True)
    reloaded = ResNet50(10)
    models.load_weights(reloaded, models.load_checkpoint(path), "resnet50", ("c",) * 10, path)
    assert all(torch.isfinite(value).all() for value in reloaded.state_dict().values() if value.is_floating_point())


def test_scaled_up_weights_are_large_and_variances_stay_in_half_precision_range():
    model = trained_like(seed=1)
    scale_up_convolutions(model, target_rms=0.5, var_limit=2.0 ** 14)
    for conv, norm in conv_bn_pairs(model):
        rms = conv.weight.pow(2).mean().sqrt().item()
        limited = norm.running_var.max().item() >= 2.0 ** 14 * 0.999  # k held back by the variance limit
        assert limited or abs(rms - 0.5) < 1e-3
        assert norm.running_var.max().item() <= 2.0 ** 14 * 1.001 < 65504


def test_undoing_the_scale_up_restores_the_weights_and_keeps_the_outputs():
    model = trained_like(seed=2)
    images = torch.randn(4, 3, 32, 32)
    original = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        before = model(images)
    factors = scale_up_convolutions(model)
    undo_scale_up(model, {"scaled_up": {"factors": factors}})
    with torch.no_grad():
        after = model(images)
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4 * before.abs().max().item())
    for key, value in model.state_dict().items():
        if value.is_floating_point():  # two multiplications: a few float32 roundings apart
            assert torch.allclose(value, original[key], rtol=1e-5, atol=1e-6 * original[key].abs().max()), key
    restored = {key: value.clone() for key, value in model.state_dict().items()}
    undo_scale_up(model, {})  # a file that was never scaled up: nothing to undo
    assert all(torch.equal(value, restored[key]) for key, value in model.state_dict().items())
