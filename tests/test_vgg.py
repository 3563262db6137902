"""VGG16-BN: shapes and parameter counts."""
import pytest
import torch

from vgg import VGG16


@pytest.mark.parametrize("num_classes,count", [(10, 33_646_666), (3, 33_617_987)])
def test_parameter_count(num_classes, count):
    assert sum(p.numel() for p in VGG16(num_classes).parameters()) == count


def test_shapes_and_backward():
    model = VGG16(10)
    x = torch.randn(2, 3, 32, 32)
    assert tuple(model.features(x).shape) == (2, 512, 1, 1)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert model.classifier[-1].weight.grad is not None


def test_dropout_flag():
    assert all(m.p == 0.0 for m in VGG16().modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.p == 0.5 for m in VGG16(dropout=True).modules() if isinstance(m, torch.nn.Dropout))
