"""Per-layer shape checks of ResNet-50. Run on a student's file with: pytest tests/test_resnet.py --impl FILE"""
import pytest
import torch

# (layer, expected output shape without the batch dimension) for a 32x32 input
LAYER_SHAPES = [
    ("layer1", (64, 8, 8)),
    ("layer2", (256, 4, 4)),
    ("layer3", (512, 2, 2)),
    ("layer4", (1024, 2, 2)),
    ("avgpool", (1024, 1, 1)),
]


@pytest.fixture(scope="module")
def model(impl):
    torch.manual_seed(0)
    return impl.ResNet50(num_classes=10).eval()


@pytest.fixture(scope="module")
def images():
    """A fixed batch of two 32x32 images."""
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def layer_outputs(model, images):
    """The output of every stage for `images`, computed stage by stage."""
    outputs = {}
    x = images
    with torch.no_grad():
        for name, _ in LAYER_SHAPES:
            x = getattr(model, name)(x)
            outputs[name] = x
        outputs["fc"] = model.fc(torch.flatten(x, 1))
    return outputs


@pytest.mark.parametrize("name,shape", LAYER_SHAPES)
def test_layer_shape(layer_outputs, name, shape):
    assert tuple(layer_outputs[name].shape) == (2, *shape)


def test_fc_shape(layer_outputs):
    assert tuple(layer_outputs["fc"].shape) == (2, 10)


def test_forward_gives_the_same_logits_as_the_stages_one_by_one(model, images, layer_outputs):
    with torch.no_grad():
        logits = model(images)
    assert tuple(logits.shape) == (2, 10)
    assert torch.allclose(logits, layer_outputs["fc"], atol=1e-5)  # forward runs every stage, in order


@pytest.mark.parametrize("num_classes", [10, 3])
def test_parameter_count(impl, model, num_classes):
    counted = model if num_classes == 10 else impl.ResNet50(num_classes=num_classes)  # builds only when it must
    expected = 14_750_730 - (10 - num_classes) * 1025
    assert sum(p.numel() for p in counted.parameters()) == expected
    assert len(counted.state_dict()) == 373


def test_course_alias(impl):
    assert impl.ResNet50_layer4 is impl.ResNet50


@pytest.mark.parametrize("in_ch,mid,out,size", [(64, 64, 256, 8), (256, 64, 256, 8), (1024, 256, 1024, 2)])
def test_block_keeps_size(impl, in_ch, mid, out, size):
    block = impl.ResidualBlock(in_ch, mid, out, downsample=False)
    y = block(torch.randn(2, in_ch, size, size))
    assert tuple(y.shape) == (2, out, size, size)
    # the branch is 1x1 -> 3x3 -> 1x1, and every shortcut is a 1x1 projection
    kernels = [m.kernel_size for m in block.layer.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kernels == [(1, 1), (3, 3), (1, 1)]


@pytest.mark.parametrize("in_ch,mid,out,size", [(256, 64, 256, 8), (512, 128, 512, 4)])
def test_block_downsamples(impl, in_ch, mid, out, size):
    block = impl.ResidualBlock(in_ch, mid, out, downsample=True)
    y = block(torch.randn(2, in_ch, size, size))
    assert tuple(y.shape) == (2, out, size // 2, size // 2)
    convs = [m for m in block.layer.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
    assert convs[0].stride == (2, 2), "the first 1x1 convolution should halve H and W"


def test_block_parameter_counts(impl):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    # conv (weights + bias) + batch-norm (2 per channel), for each of the four convolutions:
    # 1x1 64->64: 4,288; 3x3 64->64: 37,056; 1x1 64->256: 17,152; shortcut 64->256: 17,152
    assert count(impl.ResidualBlock(64, 64, 256)) == 75_648
    # 1x1 256->64: 16,576; 3x3: 37,056; 1x1 64->256: 17,152; shortcut 256->256: 66,304
    assert count(impl.ResidualBlock(256, 64, 256, downsample=True)) == 137_088


def test_forward_backward(impl):
    torch.manual_seed(0)
    model = impl.ResNet50(num_classes=10)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
