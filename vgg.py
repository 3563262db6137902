"""VGG16 with batch-norm (Simonyan and Zisserman, 2014), sized for 32x32 CIFAR images.

Five 2x2 max-pools take a 32x32 image down to 512 x 1 x 1, so the classifier
starts from 512 features. Two heads:
- "cifar": one linear layer, 512 -> num_classes (the usual CIFAR VGG16, as in
  kuangliu/pytorch-cifar): 14,728,266 parameters for 10 classes, the shipped
  checkpoint `checkpoints/vgg16_cifar10.pt` (`--model vgg16`);
- "course": the course report's 512 -> 4096 -> 4096 -> num_classes:
  33,646,666 parameters for 10 classes (`--model vgg16-course`, the
  three-class experiment).
"""
import torch
import torch.nn as nn

# Numbers are 3x3 convolution widths, "M" is a 2x2 max-pool.
VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
HEADS = ("cifar", "course")


def make_features(config: list, in_channels: int = 3) -> nn.Sequential:
    """Convolution + batch-norm + ReLU for each width, max-pool for each 'M'."""
    layers = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.BatchNorm2d(item),
                       nn.ReLU(inplace=True)]
            in_channels = item
    return nn.Sequential(*layers)


def make_classifier(head: str, num_classes: int, dropout: bool) -> nn.Sequential:
    """The 'cifar' head (one linear layer) or the course's 'course' head (two hidden layers of 4096)."""
    if head == "cifar":
        return nn.Sequential(nn.Linear(512, num_classes))
    p = 0.5 if dropout else 0.0
    return nn.Sequential(
        nn.Linear(512, 4096), nn.ReLU(inplace=True), nn.Dropout(p),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p),
        nn.Linear(4096, num_classes),
    )


class VGG16(nn.Module):
    """VGG16-BN: 13 convolutions in five stages, then the chosen head."""

    def __init__(self, num_classes: int = 10, head: str = "cifar", dropout: bool = False):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.features = make_features(VGG16_CONFIG)
        self.classifier = make_classifier(head, num_classes, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # 512 x 1 x 1
        x = torch.flatten(x, 1)  # 512
        x = self.classifier(x)  # num_classes
        return x
