"""Submissions made from the reference, for the tests of check.py and of the grader (never in the handout:
tests/grading/test_grade_handout.py checks that no right answer in any of these forms reaches it)."""

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
