"""VGG16-BN: shapes and parameter counts."""
import pytest
import torch

from vgg import VGG16


@pytest.mark.parametrize("head,num_classes,count", [("cifar", 10, 14_728_266), ("course", 10, 33_646_666),
                                                     ("course", 3, 33_617_987)])
def test_parameter_count(head, num_classes, count):
    assert sum(p.numel() for p in VGG16(num_classes, head=head).parameters()) == count


def test_cifar_head_is_one_linear_layer():
    assert [type(m) for m in VGG16(10).classifier] == [torch.nn.Linear]


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head"):
        VGG16(10, head="imagenet")


@pytest.mark.parametrize("head", ["cifar", "course"])
def test_shapes_and_backward(head):
    model = VGG16(10, head=head)
    x = torch.randn(2, 3, 32, 32)
    assert tuple(model.features(x).shape) == (2, 512, 1, 1)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert model.classifier[-1].weight.grad is not None


def test_dropout_flag():
    assert all(m.p == 0.0 for m in VGG16(head="course").modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.p == 0.5 for m in VGG16(head="course", dropout=True).modules() if isinstance(m, torch.nn.Dropout))
