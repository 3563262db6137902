"""Submissions made from the reference, and right answers in other forms, for the tests of check.py and of the
grader. Never in the handout: `grade.py handout` refuses to write one in which any answer of RIGHT_ANSWERS (or
the reference's own) appears, and tests/grading/test_grade_handout.py checks that it does."""

# A right bottleneck written without the helpers, each layer its own nn.Sequential: the grader and check.py
# must accept it (tests/grading/test_grade_cohort.py, tests/grading/test_check_agreement.py).
INLINE_NESTED = """\
                nn.Sequential(nn.Conv2d(in_channels, middle_channels, 1, 2), nn.BatchNorm2d(middle_channels),
                              nn.ReLU()),
                nn.Sequential(nn.Conv2d(middle_channels, middle_channels, 3, padding=1),
                              nn.BatchNorm2d(middle_channels), nn.ReLU(inplace=True)),
                nn.Sequential(nn.Conv2d(middle_channels, out_channels, kernel_size=1),
                              nn.BatchNorm2d(out_channels), nn.ReLU()),
"""


# Right answers to the blanks written otherwise than the reference (whose own answers grading/handout.py adds):
# blank id -> answer texts, each what a student writes between the markers. The tests of the grader and of
# check.py use these forms; gathered here so that the handout's leak check (grading/handout.py, leaked_answers)
# knows every one of them. tests/grading/test_grade_handout.py checks that the grader accepts each.
RIGHT_ANSWERS = {
    "stem_conv": [
        "torch.nn.Conv2d(3, 64, (7, 7), 2, 3),",
        "nn.Conv2d(3, 64, 7, 2, 3),",
        "nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),",
    ],
    "stem_pool": [
        "nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True),",
        "nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),",
        "nn.MaxPool2d(kernel_size=[3, 3], stride=2, padding=1),",
        "nn.MaxPool2d(3, 2, 1),",
    ],
    "block_downsample": [
        INLINE_NESTED,
        "conv1x1(in_channels,middle_channels,2,0),   # stride 2 here\n"
        "conv3x3(middle_channels, middle_channels, stride=(1, 1), padding=1),\n"
        "conv1x1(middle_channels, out_channels, stride=1, padding=0),\n",
        "conv1x1(in_channels, middle_channels, 2, 0),\n"
        "conv3x3(middle_channels, middle_channels, 1, 1),\n"
        "conv1x1(middle_channels, out_channels, 1, 0),\n",
    ],
    "block_same": [
        "conv1x1(in_channels=in_channels, out_channels=middle_channels,\n"
        "        stride=1, padding=0),\n"
        "conv3x3(middle_channels, middle_channels, stride=1, padding=1),\n"
        "conv1x1(middle_channels, out_channels, stride=1, padding=0),\n",
        "conv1x1(in_channels, middle_channels, 1, 0),\n"
        "conv3x3(middle_channels, middle_channels, 1, 1),\n"
        "conv1x1(middle_channels, out_channels, 1, 0),\n",
    ],
    "layer2": [
        "ResidualBlock(64, 64, 256),\nResidualBlock(256, 64, 256, downsample=False),\n"
        "ResidualBlock(256, 64, 256, downsample=True),\n",
        "ResidualBlock(64, 64, 64 * 4), ResidualBlock(256, 64, 2 ** 8),\n"
        "ResidualBlock(256, 64, 256, downsample=1 == 1),\n",
        "ResidualBlock(64, 64, 64 * 4, downsample=False),\nResidualBlock(256, 64, 256, downsample=False),\n"
        "ResidualBlock(256, 64, 256, downsample=True),\n",
        "ResidualBlock(64, 64, 256),\nResidualBlock(256, 64, 256),\nResidualBlock(256, 64, 256, True),\n",
    ],
    "layer3": [
        "*[ResidualBlock(256 if i == 0 else 512, 128, 512, downsample=i == 3) for i in range(4)],",
        "ResidualBlock(256, 128, 512),\nResidualBlock(512, 128, 512),\nResidualBlock(512, 128, 512),\n"
        "ResidualBlock(512, 128, 512, True),\n",
    ],
    "layer4": [
        "*[ResidualBlock(512 if i == 0 else 1024, 256, 1024) for i in range(6)],",
        "ResidualBlock(512, 256, 1024), *(ResidualBlock(1024, 256, 1024) for j in range(1, 6)),",
        "ResidualBlock(512, 256, 1024, downsample=False),\n"
        "*[ResidualBlock(1024, 256, 1024, False) for _ in range(5)],\n",
        "ResidualBlock(512, 256, 1024),\n*[ResidualBlock(1024, 256, 1024) for _ in range(5)],\n",
    ],
    "avgpool": [
        "self.avgpool = nn.AvgPool2d(2)",
        "self.avgpool = nn.AvgPool2d(2, stride=2)",
        "self.avgpool = nn.AvgPool2d(kernel_size=(2, 2), stride=5)",
        "self.avgpool = nn.AdaptiveAvgPool2d(1)",
        "self.avgpool = nn.AdaptiveAvgPool2d(output_size=1)",
        "self.avgpool = nn.AdaptiveAvgPool2d((1, 1))",
        "self.avgpool = nn.AdaptiveAvgPool2d([1, 1])",
        "self.avgpool: nn.Module = nn.AvgPool2d(kernel_size=2, stride=1)",
        "self.avgpool: nn.Module = nn.AvgPool2d(2, stride=2)",
    ],
    "fc": [
        "self.fc = nn.Linear(in_features=1024, out_features=num_classes, bias=True)",
        "self.fc = nn.Linear(1024 * 1 * 1, num_classes)",
        "self.fc: nn.Linear = nn.Linear(1024, num_classes)",
        "self.fc = nn.Linear(1024, out_features=num_classes)",
    ],
}


def edit(text: str, *replacements: tuple[str, str]) -> str:
    """The text with each (old, new) replaced once; old must be there."""
    for old, new in replacements:
        assert old in text, f"the reference no longer contains {old!r}: update the test"
        text = text.replace(old, new, 1)
    return text


def run_grade(argv: list[str]) -> int:
    """grade.py's exit code for a command line, run in this process."""
    from course.cli import run_cli
    from grading.cli import main

    try:
        run_cli(main, argv)
    except SystemExit as exit:
        return exit.code
    return 0
