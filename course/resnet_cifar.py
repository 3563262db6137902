"""ResNet-50 adapted to 32x32 CIFAR images: a 3x3 stride-1 stem and no max-pool.

The blocks are torchvision's ResNet-50 bottlenecks ("ResNet v1.5": a downsampling
block puts its stride 2 on the 3x3 convolution, not on the first 1x1 as in He et
al., 2015, and as in the assignment's resnet.py). Unlike resnet.py, a shortcut is
the identity wherever the shapes match, and a 1x1 projection only where the
channels or the size change (He et al.'s option "B").

Shapes for a 32x32 input (batch dimension left out):

    stem      64 x 32 x 32   3x3 conv, stride 1; batch-norm, ReLU (no max-pool)
    layer1   256 x 32 x 32   3 bottleneck blocks
    layer2   512 x 16 x 16   4 bottleneck blocks, the first one halves H and W
    layer3  1024 x  8 x  8   6 bottleneck blocks, the first one halves H and W
    layer4  2048 x  4 x  4   3 bottleneck blocks, the first one halves H and W
    avgpool 2048 x  1 x  1
    fc        num_classes    23,524,682 parameters for 10 classes, 23,510,339 for 3

The four projection convolutions keep a bias (256 + 512 + 1024 + 2048 = 3,840
parameters); every other convolution has none, as it is followed by batch-norm.
"""
import torch
import torch.nn as nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1, no bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """1x1 convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=bias)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride here) -> 1x1 (expand x4), plus a shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        # torchvision's name; in layer1's first block it only widens 64 -> 256, at stride 1
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride, bias=True),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Cifar(nn.Module):
    """ResNet-50 (3, 4, 6, 3 bottleneck blocks) with a CIFAR stem that keeps the 32x32 resolution."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.in_channels = 64
        self.conv1 = conv3x3(3, 64)  # 64 x 32 x 32
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, blocks=3, stride=1)  # 256 x 32 x 32
        self.layer2 = self._make_layer(128, blocks=4, stride=2)  # 512 x 16 x 16
        self.layer3 = self._make_layer(256, blocks=6, stride=2)  # 1024 x 8 x 8
        self.layer4 = self._make_layer(512, blocks=3, stride=2)  # 2048 x 4 x 4
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # 2048 x 1 x 1
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, width: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage: a first block that may change shape, then blocks with identity shortcuts."""
        layers = [Bottleneck(self.in_channels, width, stride)]
        self.in_channels = width * Bottleneck.expansion
        layers += [Bottleneck(self.in_channels, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        """He init for convolutions (zero biases), unit scale for batch-norm; PyTorch's default for fc."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)
