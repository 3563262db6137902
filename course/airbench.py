"""airbench94's network (Keller Jordan, cifar10-airbench): the distillation teacher of the ResNet-50.

Three conv groups (64, 256, 256 channels) after a fixed 2x2 whitening convolution; about 2 million parameters.
Every trick is airbench's: patch-whitening initialisation, identity-initialised convolutions, batch-norms
with frozen scales, GELU, a scaled-down linear head.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTHS = (64, 256, 256)
BATCHNORM_MOMENTUM = 0.4  # PyTorch's convention: airbench's 0.6 is 1 - this
HEAD_SCALE = 1 / 9  # the logits are scaled down: a cooler start for the sum-of-losses recipe


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """A batch-norm whose scale stays 1 (frozen) and whose bias learns."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=BATCHNORM_MOMENTUM)
    norm.weight.requires_grad_(False)
    return norm


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias; its first in_channels filters start as the identity."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
    nn.init.dirac_(conv.weight.data[:in_channels])
    return conv


class ConvGroup(nn.Module):
    """conv -> 2x2 max-pool -> batch-norm -> GELU -> conv -> batch-norm -> GELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = batch_norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm2 = batch_norm(out_channels)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.pool(x)
        x = self.norm1(x)
        x = self.activation(x)
        x = self.conv2(x)
        x = self.norm2(x)
        x = self.activation(x)
        return x


class AirbenchNet(nn.Module):
    """airbench94's network for 32x32 images normalized as the rest of this project does."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)  # set by init_whitening, then frozen
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)  # airbench: the bias starts at 0 and learns for the first epochs
        self.group1 = ConvGroup(24, WIDTHS[0])
        self.group2 = ConvGroup(WIDTHS[0], WIDTHS[1])
        self.group3 = ConvGroup(WIDTHS[1], WIDTHS[2])
        self.pool = nn.MaxPool2d(3)
        self.fc = nn.Linear(WIDTHS[2], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten(x))  # 24 x 31 x 31
        x = self.group1(x)  # 64 x 15 x 15
        x = self.group2(x)  # 256 x 7 x 7
        x = self.group3(x)  # 256 x 3 x 3
        x = self.pool(x).flatten(1)  # 256
        return self.fc(x) * HEAD_SCALE


@torch.no_grad()
def init_whitening(conv: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set the 2x2 convolution to whiten the images' 2x2 patches: the covariance's eigenvectors over the square
    roots of its eigenvalues, each once with each sign (12 patch dimensions, 24 filters)."""
    c, (h, w) = images.shape[1], conv.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w).double()
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0).reshape(c * h * w, c, h, w)
    conv.weight.copy_(torch.cat((filters, -filters)).float())


def predict_with_tta(model: nn.Module, images: torch.Tensor, level: int) -> torch.Tensor:
    """airbench's test-time augmentation: 0 none, 1 the mean over the image and its mirror, 2 also half-weight
    1-pixel translations (up-left and down-right, reflection padding)."""
    if level == 0:
        return model(images)
    mirrored = 0.5 * (model(images) + model(images.flip(-1)))
    if level == 1:
        return mirrored
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    size = images.shape[-1]
    shifted = [padded[:, :, :size, :size], padded[:, :, 2:, 2:]]
    translated = sum(0.5 * (model(x) + model(x.flip(-1))) for x in shifted) / 2
    return 0.5 * mirrored + 0.5 * translated
