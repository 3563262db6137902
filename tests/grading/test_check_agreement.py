"""check.py and grade.py agree, blank by blank: a blank passes check.py exactly when the grader gives it full points.

The files are the reference with one or two kinds of mistake (those of issue 22 and more), or right answers
in unusual forms; the grader runs with a fixed seed. Each case also names the blanks that must fail, so that the
agreement is never that of two tools that both see nothing.
"""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
from submissions import INLINE_NESTED, edit

import check
from course.assignment import BLANKS, find_blanks

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")


def in_blank(blank_id: str, old: str, new: str, text: str = REFERENCE) -> str:
    """The text with every `old` replaced by `new` inside one blank's answer lines only."""
    blank = find_blanks(text)[0][blank_id]
    lines = text.splitlines(keepends=True)
    changed = [line.replace(old, new) for line in blank.lines]
    assert changed != blank.lines, f"{old!r} is not in blank {blank_id}"
    lines[blank.begin + 1:blank.end] = changed
    return "".join(lines)


LAYER3_BLOCK = "            ResidualBlock(512, 128, 512, downsample=False),  # 512 x 4 x 4\n"
LAYER4_REST = "            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2\n" * 5
SAME_SHORTCUT = "            self.shortcut = conv1x1(in_channels, out_channels, stride=1, padding=0)\n"
IDENTITY_SHORTCUT = ("            self.shortcut = nn.Identity() if in_channels == out_channels else conv1x1(\n"
                     "                in_channels, out_channels, stride=1, padding=0)\n")
STEM_RELU = "            nn.BatchNorm2d(64),\n            nn.ReLU(inplace=True),\n"
DOWN_BRANCH = "".join(find_blanks(REFERENCE)[0]["block_downsample"].lines)

# Two mistakes in two blanks share a file where neither blank's check builds the other's code (a block's mistake
# never shares a file with a layer's): each must show in its own blank only, in both tools. 12 files, not 19: a
# graded file costs about 4 s of a core.
CASES = {  # name: (the file, the blanks that fail)
    "block_downsample_with_256_written_and_fc_with_2048_in": (
        edit(in_blank("block_downsample", "conv1x1(middle_channels, out_channels", "conv1x1(middle_channels, 256"),
             ("nn.Linear(1024, num_classes)", "nn.Linear(2048, num_classes)")), {"block_downsample", "fc"}),
    "stride_on_the_3x3_and_stem_with_padding_2": (
        edit(in_blank("block_downsample", "stride=2, padding=0", "stride=1, padding=0",
                      in_blank("block_downsample", "stride=1, padding=1", "stride=2, padding=1")),
             ("stride=2, padding=3)", "stride=2, padding=2)")), {"block_downsample", "stem_conv"}),
    "block_same_with_64_written_and_fc_without_bias": (
        edit(in_blank("block_same", "middle_channels", "64"),
             ("nn.Linear(1024, num_classes)", "nn.Linear(1024, num_classes, bias=False)")), {"block_same", "fc"}),
    "block_same_without_padding_on_the_3x3_and_max_pool_for_avgpool": (
        edit(in_blank("block_same", "stride=1, padding=1", "stride=1, padding=0"),
             ("nn.AvgPool2d(kernel_size=2, stride=1)", "nn.MaxPool2d(2)")), {"block_same", "avgpool"}),
    "3x3_first_and_no_max_pool": (
        edit(in_blank("block_same", "conv1x1(in_channels, middle_channels, stride=1, padding=0)",
                      "conv3x3(in_channels, middle_channels, stride=1, padding=1)",
                      in_blank("block_same", "conv3x3(middle_channels, middle_channels, stride=1, padding=1)",
                               "conv1x1(middle_channels, middle_channels, stride=1, padding=0)")),
             ("nn.MaxPool2d(kernel_size=3, stride=2, padding=1),", "nn.Identity(),")), {"block_same", "stem_pool"}),
    "layer2_downsamples_first_and_fc_for_ten_classes_only": (
        edit(REFERENCE, ("ResidualBlock(64, 64, 256, downsample=False)", "ResidualBlock(64, 64, 256, True)"),
             ("ResidualBlock(256, 64, 256, downsample=True)", "ResidualBlock(256, 64, 256)"),
             ("nn.Linear(1024, num_classes)", "nn.Linear(1024, 10)")), {"layer2", "fc"}),
    "layer3_with_middle_64_and_layer4_sharing_one_block": (
        edit(in_blank("layer3", ", 128, 512", ", 64, 512"),
             (LAYER4_REST, "            *[ResidualBlock(1024, 256, 1024)] * 5,\n")), {"layer3", "layer4"}),
    "layer3_with_5_blocks": (edit(REFERENCE, (LAYER3_BLOCK, LAYER3_BLOCK * 2)), {"layer3"}),
    "identity_shortcut_outside_the_blanks": (edit(REFERENCE, (SAME_SHORTCUT, IDENTITY_SHORTCUT)), {"block_same"}),
    "prelu_outside_the_blanks": (edit(REFERENCE, (STEM_RELU, STEM_RELU.replace("nn.ReLU(inplace=True)", "nn.PReLU()"))),
                                 {"stem_conv", "stem_pool"}),
    "right_in_unusual_forms": (
        edit(REFERENCE, ("self.avgpool = nn.AvgPool2d(kernel_size=2, stride=1)",
                         '"""The average of the 2x2 map."""\n'
                         '        self.avgpool: nn.Module = nn.AvgPool2d(2, stride=2)'),
             ("nn.MaxPool2d(kernel_size=3, stride=2, padding=1)",
              "nn.MaxPool2d(kernel_size=[3, 3], stride=2, padding=1)"),
             ("self.fc = nn.Linear(1024, num_classes)", "self.fc: nn.Linear = nn.Linear(1024, num_classes)"),
             (DOWN_BRANCH, INLINE_NESTED)), set()),
    "adaptive_pool_as_a_list": (
        edit(REFERENCE, ("nn.AvgPool2d(kernel_size=2, stride=1)", "nn.AdaptiveAvgPool2d([1, 1])")), set()),
}


@pytest.fixture(scope="module")
def grader(tmp_path_factory):
    """The grader's points per blank, by case, with a fixed seed."""
    folder = tmp_path_factory.mktemp("agreement")
    for name, (text, _) in CASES.items():
        (folder / f"{name}.py").write_text(text, encoding="utf-8")
    csv_path = folder.parent / "agreement.csv"
    done = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), "--jobs", "2", "--seed", "1",
                           "--csv", str(csv_path)], check=False, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    with open(csv_path, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def check_py(path: Path, capsys) -> dict[str, str]:
    """blank -> its line of check.py's report on the file."""
    check.main([str(path)])
    lines = capsys.readouterr().out.splitlines()[1:-1]
    return {line[2:19].strip(): line[20:] for line in lines}


@pytest.mark.parametrize("name", CASES)
def test_check_py_and_the_grader_agree(grader, tmp_path, capsys, name):
    text, failing = CASES[name]
    path = tmp_path / "resnet.py"
    path.write_text(text, encoding="utf-8")
    lines = check_py(path, capsys)
    check_fails = {b for b in BLANKS if lines[b] != "pass"}
    grader_fails = {b for b in BLANKS if grader[name][b] != str(check_points(b))}
    assert check_fails == grader_fails == failing, (lines, grader[name]["notes"])


def check_points(blank_id: str) -> int:
    """The full points of a blank (from its BEGIN line in the reference)."""
    return find_blanks(REFERENCE)[0][blank_id].points
