"""ResNet-50 for CIFAR-10, as the course assignment defines it.

Shapes for a 32x32 input (batch dimension left out):

    input     3 x 32 x 32
    layer1   64 x  8 x  8   7x7 stride-2 conv, 3x3 stride-2 max-pool
    layer2  256 x  4 x  4   3 bottleneck blocks, the last one halves H and W
    layer3  512 x  2 x  2   4 bottleneck blocks, the last one halves H and W
    layer4 1024 x  2 x  2   6 bottleneck blocks
    avgpool 1024 x  1 x  1
    fc        10            14,750,730 parameters in all

Each part a student fills in sits between a pair of marker lines:

    # BEGIN BLANK <id> points=<n> hint="<hint>"
    ...answer...
    # END BLANK <id>

`grade.py` reads these markers to make the student skeleton and to grade.
"""
import torch
import torch.nn as nn


def conv1x1(in_channels: int, out_channels: int, stride: int, padding: int) -> nn.Sequential:
    """1x1 convolution, batch-norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv3x3(in_channels: int, out_channels: int, stride: int, padding: int) -> nn.Sequential:
    """3x3 convolution, batch-norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Bottleneck block: 1x1 (reduce) -> 3x3 -> 1x1 (expand), plus a shortcut.

    Every shortcut is a 1x1 projection, even when the channel counts already
    match: this is the assignment's design (option "C" of He et al., 2015) and
    it is what gives the 14,750,730 parameters.
    """

    def __init__(self, in_channels: int, middle_channels: int, out_channels: int, downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        if downsample:
            self.layer = nn.Sequential(
                # BEGIN BLANK block_downsample points=20 hint="use conv1x1 and conv3x3; the first 1x1 halves H and W"
                conv1x1(in_channels, middle_channels, stride=2, padding=0),  # middle x H/2 x W/2
                conv3x3(middle_channels, middle_channels, stride=1, padding=1),  # middle x H/2 x W/2
                conv1x1(middle_channels, out_channels, stride=1, padding=0),  # out x H/2 x W/2
                # END BLANK block_downsample
            )
            self.shortcut = conv1x1(in_channels, out_channels, stride=2, padding=0)
        else:
            self.layer = nn.Sequential(
                # BEGIN BLANK block_same points=20 hint="use conv1x1 and conv3x3; H and W stay the same"
                conv1x1(in_channels, middle_channels, stride=1, padding=0),  # middle x H x W
                conv3x3(middle_channels, middle_channels, stride=1, padding=1),  # middle x H x W
                conv1x1(middle_channels, out_channels, stride=1, padding=0),  # out x H x W
                # END BLANK block_same
            )
            self.shortcut = conv1x1(in_channels, out_channels, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        identity = self.shortcut(x)
        # Both paths end in a ReLU, so the sum is already non-negative:
        # a ReLU after it (as in torchvision) would change nothing.
        return out + identity


class ResNet50(nn.Module):
    """The assignment's ResNet-50 (called ResNet50_layer4 in the course)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.layer1 = nn.Sequential(
            # BEGIN BLANK stem_conv points=5 hint="7x7 conv, 3 -> 64 channels; it halves the image size"
            nn.Conv2d(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3),  # 64 x 16 x 16
            # END BLANK stem_conv
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            # BEGIN BLANK stem_pool points=5 hint="3x3 max-pool that halves the image size again"
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # 64 x 8 x 8
            # END BLANK stem_pool
        )
        self.layer2 = nn.Sequential(
            # BEGIN BLANK layer2 points=10 hint="3 blocks, middle 64, out 256; only the last one downsamples"
            ResidualBlock(64, 64, 256, downsample=False),  # 256 x 8 x 8
            ResidualBlock(256, 64, 256, downsample=False),  # 256 x 8 x 8
            ResidualBlock(256, 64, 256, downsample=True),  # 256 x 4 x 4
            # END BLANK layer2
        )
        self.layer3 = nn.Sequential(
            # BEGIN BLANK layer3 points=10 hint="4 blocks, middle 128, out 512; only the last one downsamples"
            ResidualBlock(256, 128, 512, downsample=False),  # 512 x 4 x 4
            ResidualBlock(512, 128, 512, downsample=False),  # 512 x 4 x 4
            ResidualBlock(512, 128, 512, downsample=False),  # 512 x 4 x 4
            ResidualBlock(512, 128, 512, downsample=True),  # 512 x 2 x 2
            # END BLANK layer3
        )
        self.layer4 = nn.Sequential(
            # BEGIN BLANK layer4 points=10 hint="6 blocks, middle 256, out 1024; none downsamples"
            ResidualBlock(512, 256, 1024, downsample=False),  # 1024 x 2 x 2
            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2
            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2
            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2
            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2
            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2
            # END BLANK layer4
        )
        # BEGIN BLANK avgpool points=5 hint="average over the whole 2x2 map"
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=1)  # 1024 x 1 x 1
        # END BLANK avgpool
        # BEGIN BLANK fc points=5 hint="linear classifier from the pooled features to the classes"
        self.fc = nn.Linear(1024, num_classes)  # num_classes
        # END BLANK fc
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for convolutions, unit scale for batch-norm (PyTorch's usual choice)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


ResNet50_layer4 = ResNet50  # the course's name for the same model
