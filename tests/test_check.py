"""Tests of check.py, the student's self-check: the reference, a fresh skeleton, and wrong files made here
by editing the reference text. Each check runs in-process (check.main), except one command-line run."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from submissions import edit, run_grade

import check
from course import assignment as spec
from course.cli import UserError, run_cli
from grading import markers

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_TEXT = (ROOT / "resnet.py").read_text(encoding="utf-8")
TESTS_TEXT = (ROOT / "tests" / "test_resnet.py").read_text(encoding="utf-8")
# every line of the reference answers, without comments and trailing commas: the report must show none of them
ANSWER_LINES = {re.sub(r"\s*#.*", "", line).strip().rstrip(",")
                for blank in spec.find_blanks(REFERENCE_TEXT)[0].values() for line in blank.lines} - {""}

MAXPOOL = "nn.MaxPool2d(kernel_size=3, stride=2, padding=1),"
LAYER3_BLOCK = "            ResidualBlock(512, 128, 512, downsample=False),  # 512 x 4 x 4\n"
SAME_1X1 = "conv1x1(in_channels, middle_channels, stride=1, padding=0),  # middle x H x W"


def line_of(text: str, snippet: str) -> int:
    """The 1-based number of the first line of text that contains snippet."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if snippet in line)


def in_blank(text: str, blank_id: str, old: str, new: str) -> str:
    """The text with every `old` replaced by `new` inside one blank's answer lines only."""
    blank = spec.find_blanks(text)[0][blank_id]
    lines = text.splitlines(keepends=True)
    lines[blank.begin + 1:blank.end] = [line.replace(old, new) for line in blank.lines]
    return "".join(lines)


def run(path: Path, capsys) -> tuple[int, dict[str, str], str]:
    """check.main on a file: exit code, {blank or 'whole model': its report}, last line; checks what never shows."""
    code = check.main([str(path)])
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert not [line for line in ANSWER_LINES if line in out], "the report shows a line of the reference answer"
    lines = out.splitlines()
    assert lines[0] == f"Checking {path}"
    return code, {line[2:19].strip(): line[20:] for line in lines[1:-1]}, lines[-1]


def write(tmp_path: Path, text: str, name: str = "resnet.py") -> Path:
    """A student file in tmp_path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ the spec table

def test_spec_table_matches_the_tests_and_the_hints():
    tree = ast.parse(TESTS_TEXT)
    layer_shapes = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "LAYER_SHAPES")
    assert ast.literal_eval(layer_shapes) == list(spec.LAYER_SHAPES.items())
    assert f"{spec.PARAMETERS:_}" in TESTS_TEXT and f"{spec.NUM_CLASSES})" in TESTS_TEXT
    for (c_in, middle, out, down) in [(64, 64, 256, False), (256, 64, 256, True)]:  # the tests' parameter counts
        params = spec.block_parameters(c_in, middle, out)
        call = f"ResidualBlock({c_in}, {middle}, {out}{', downsample=True' if down else ''})) == {params:_}"
        assert call in TESTS_TEXT
    hints = {b.id: b.hint for b in markers.reference_blanks(REFERENCE_TEXT).values()}
    assert set(hints) == set(spec.BLANKS)
    for layer, (blocks, _, middle, out, last_down) in spec.STAGES.items():
        assert hints[layer].startswith(f"{blocks} blocks, middle {middle}, out {out}; ")
        assert ("only the last one downsamples" in hints[layer]) == last_down
    assert sum(spec.part_parameters().values()) == spec.PARAMETERS
    assert list(spec.PARTS) == [*spec.LAYER_SHAPES, "fc"] and {b for bs in spec.PARTS.values() for b in bs} == set(
        spec.BLANKS) - set(spec.BLOCKS)


def test_untouched_is_the_skeletons_placeholder_and_nothing_else():
    assert spec.untouched([]) and spec.untouched(["    # hint: ...\n", "    # fill in here (5 points)\n"])
    assert spec.untouched(["        # hint: ...\n", "        self.fc = None  # fill in here (5 points)\n"])
    assert not spec.untouched(["        self.fc = nn.Linear(1024, num_classes)\n"])
    assert not spec.untouched(["        self.fc = None\n", "        self.fc = nn.Identity()\n"])


def test_broken_markers_leave_their_blank_out():
    text = ("# BEGIN BLANK a points=5 hint=\"h\"\nx = 1\n# END BLANK a\n"  # the one whole blank
            "# BEGIN BLANK b\n# BEGIN BLANK c\n# END BLANK c\n# END BLANK d\n# BEGIN BLANK a\n# END BLANK a\n")
    blanks, problems = spec.find_blanks(text)
    assert list(blanks) == ["c"] and (blanks["c"].points, blanks["c"].hint) == (None, None)
    assert problems.keys() == {"a", "b", "d"} and "more than once" in problems["a"]


def test_block_probes_use_widths_found_nowhere_in_the_network():
    for blank in spec.BLOCKS:
        assert len(spec.PROBES[blank]) >= 3
        for _, (c_in, middle, out, down), _, _ in spec.PROBES[blank]:
            assert not {c_in, middle, out} & spec.NETWORK_WIDTHS and down == (blank == "block_downsample")
    assert any(c_in == out for _, (c_in, _, out, _), _, _ in spec.PROBES["block_same"])


# ------------------------------------------------------------------ the reference and the skeleton

def test_reference_passes_every_blank(capsys):
    code, results, last = run(ROOT / "resnet.py", capsys)
    assert code == 0
    assert results == dict.fromkeys([*spec.BLANKS, "whole model"], "pass")
    assert last == "9 of 9 blanks pass; 90 of 90 points"


def test_fresh_skeleton_is_nine_not_done_lines(tmp_path, capsys):
    assert run_grade(["skeleton", "-o", str(tmp_path / "resnet.py")]) == 0
    capsys.readouterr()
    code, results, last = run(tmp_path / "resnet.py", capsys)
    assert code == 1
    for blank in spec.BLANKS:
        assert results[blank] == f"not done yet (fill in the code between the BEGIN/END BLANK {blank} lines)"
    assert results["whole model"] == "checked once all 9 blanks pass"
    assert last == "0 of 9 blanks pass; 0 of 90 points"


def test_skeleton_without_markers_is_still_not_done_and_has_no_points(tmp_path, capsys):
    skeleton = markers.make_skeleton(REFERENCE_TEXT)
    path = write(tmp_path, "".join(line for line in skeleton.splitlines(keepends=True) if "BLANK" not in line))
    code, results, last = run(path, capsys)
    assert code == 1
    assert all(results[b].startswith("not done yet") for b in spec.BLANKS)
    assert last == "0 of 9 blanks pass"


# ------------------------------------------------------------------ wrong files: one blank fails, the others pass

CRASHES = edit(REFERENCE_TEXT, (SAME_1X1, "conv1x1(in_channels, out_channels, stride=1, padding=0),"))
TYPO = edit(REFERENCE_TEXT, ("nn.Conv2d(in_channels=3", "nn.Conv2D(in_channels=3"))
WRONG = {  # name: (the file, the blank that fails, the points left, what its line must say)
    "max-pool removed": (edit(REFERENCE_TEXT, (MAXPOOL, "nn.Identity(),")), "stem_pool", 85,
                         "layer1: expected 64 x 8 x 8, got 64 x 16 x 16: is the max-pool there"),
    "layer3 with 5 blocks": (edit(REFERENCE_TEXT, (LAYER3_BLOCK, LAYER3_BLOCK * 2)), "layer3", 80,
                             "layer3: 5 blocks, expected 4"),
    "block_same with wrong middle channels": (
        in_blank(REFERENCE_TEXT, "block_same", "middle_channels", "out_channels"), "block_same", 70,
        "ResidualBlock(in=12, middle=4, out=20, downsample=False) has 4,720 parameters, expected 656: check the "
        "channel counts"),
    "block_same that crashes": (
        CRASHES, "block_same", 70,
        ("running the branch (self.layer) of ResidualBlock(in=12, middle=4, out=20, downsample=False) on a "
         "12 x 5 x 5 input raised RuntimeError: Given groups=1, weight of size [4, 4, 3, 3], expected "
         "input[2, 20, 5, 5] to have 4 channels, but got 20 channels instead - check the channel counts of your "
         "conv1x1/conv3x3 calls")),
    "block_same without padding on the 3x3": (
        in_blank(REFERENCE_TEXT, "block_same", "stride=1, padding=1", "stride=1, padding=0"), "block_same", 70,
        "turns 5 x 5 into 3 x 3: H and W should stay the same: check the stride and padding of your convolutions"),
    "block_downsample with a hard-coded 256": (
        in_blank(REFERENCE_TEXT, "block_downsample", "conv1x1(middle_channels, out_channels",
                 "conv1x1(middle_channels, 256"), "block_downsample", 70,
        "gives 256 x 3 x 3, expected 20 channels (out_channels): check the channel counts"),
    "typo in the stem": (TYPO, "stem_conv", 85,
                         ("building ResNet50() raised AttributeError: module 'torch.nn' has no attribute 'Conv2D' "
                          f"(line {line_of(TYPO, 'nn.Conv2D(')} of your file)")),
    "stem padding 2": (edit(REFERENCE_TEXT, ("stride=2, padding=3)", "stride=2, padding=2)")), "stem_conv", 85,
                       "layer1's convolution gives 64 x 15 x 15, expected 64 x 16 x 16: check stride and padding"),
    "layer2 without its downsampling": (
        edit(REFERENCE_TEXT, ("ResidualBlock(256, 64, 256, downsample=True)", "ResidualBlock(256, 64, 256)")),
        "layer2", 80, "layer2, block 3 keeps H and W; the hint says only the last one downsamples"),
    "layer2 downsampling first": (
        edit(REFERENCE_TEXT, ("ResidualBlock(64, 64, 256, downsample=False)", "ResidualBlock(64, 64, 256, True)")),
        "layer2", 80, "layer2, block 1 halves H and W; the hint says only the last one downsamples"),
    "fc with 2048 features in": (
        edit(REFERENCE_TEXT, ("nn.Linear(1024, num_classes)", "nn.Linear(2048, num_classes)")), "fc", 85,
        "raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x1024 and 2048x10) - look at your "
        "nn.Linear: from the pooled features (what avgpool gives) to the classes"),
    "fc without its bias": (
        edit(REFERENCE_TEXT, ("nn.Linear(1024, num_classes)", "nn.Linear(1024, num_classes, bias=False)")), "fc", 85,
        "fc has 10,240 parameters, expected 10,250"),
    "layer4 sharing one block": (
        edit(REFERENCE_TEXT, ("            ResidualBlock(1024, 256, 1024, downsample=False),  # 1024 x 2 x 2\n" * 5,
                              "            *[ResidualBlock(1024, 256, 1024, downsample=False)] * 5,\n")),
        "layer4", 80, "layer4: the same block object is there more than once"),
    "layer2 as a list": (edit(REFERENCE_TEXT,
                              ("ResidualBlock(64, 64, 256, downsample=False),", "[ResidualBlock(64, 64, 256),"),
                              ("ResidualBlock(256, 64, 256, downsample=True),", "ResidualBlock(256, 64, 256, True)],")),
                         "layer2", 80, "building ResNet50() raised TypeError: list is not a Module subclass"),
    "max-pool for avgpool": (edit(REFERENCE_TEXT, ("nn.AvgPool2d(kernel_size=2, stride=1)", "nn.MaxPool2d(2)")),
                             "avgpool", 85, "not the average of the 2 x 2 map"),
    "fc ignores num_classes": (edit(REFERENCE_TEXT, ("nn.Linear(1024, num_classes)", "nn.Linear(1024, 10)")), "fc", 85,
                               "fc: ResNet50(num_classes=3) gives 10 logits, expected 3: use num_classes"),
}


@pytest.mark.parametrize("name", WRONG)
def test_one_wrong_blank_fails_alone(tmp_path, capsys, name):
    text, blank, points, message = WRONG[name]
    code, results, last = run(write(tmp_path, text), capsys)
    assert code == 1
    assert results[blank].startswith("FAIL  ") and message in results[blank]
    assert [b for b in spec.BLANKS if results[b] != "pass"] == [blank]
    assert results["whole model"] == "checked once all 9 blanks pass"
    assert last == f"8 of 9 blanks pass; {points} of 90 points"


def test_no_resnet50_fails_every_model_blank_but_not_the_blocks(tmp_path, capsys):
    code, results, last = run(write(tmp_path, REFERENCE_TEXT.replace("ResNet50", "ResNet")), capsys)
    assert code == 1
    no_model = "FAIL  building ResNet50() raised AttributeError: module 'student_resnet' has no attribute 'ResNet50'"
    assert results == {**dict.fromkeys(spec.BLANKS, no_model), "block_downsample": "pass", "block_same": "pass",
                       "whole model": "checked once all 9 blanks pass"}
    assert last == "2 of 9 blanks pass; 40 of 90 points"


def test_messages_never_say_more_than_the_hint(tmp_path, capsys):
    wrong = edit(REFERENCE_TEXT, ("nn.Linear(1024, num_classes)", "nn.Linear(2048, num_classes)"),
                 ("ResidualBlock(64, 64, 256, downsample=False)", "ResidualBlock(64, 64, 256, True)"),
                 ("ResidualBlock(256, 128, 512, downsample=False),  # 512 x 4 x 4", "ResidualBlock(256, 32, 512),"))
    _, results, _ = run(write(tmp_path, wrong), capsys)
    assert "1024 features in" not in results["fc"] and "in_features" not in results["fc"]
    assert results["layer3"] == "FAIL  layer3, block 1: middle 32; the hint says middle 128"
    assert "in 64" not in results["layer2"] and "expected" not in results["layer2"]


def test_whole_model_names_the_blanks_it_points_to(tmp_path, capsys):
    prelu = ("            nn.BatchNorm2d(64),\n            nn.ReLU(inplace=True),\n",
             "            nn.BatchNorm2d(64),\n            nn.PReLU(),\n")  # outside the blanks: one more parameter
    code, results, last = run(write(tmp_path, edit(REFERENCE_TEXT, prelu)), capsys)
    assert code == 1
    assert results["whole model"] == ("FAIL  parameters: 14,750,730 expected, got 14,750,731: the difference is in "
                                      "layer1: look at stem_conv and stem_pool (or at code outside the blanks that "
                                      "they use)")
    assert [b for b in spec.BLANKS if results[b] != "pass"] == ["stem_conv", "stem_pool"]
    assert last == "7 of 9 blanks pass; 80 of 90 points"


# ------------------------------------------------------------------ files that do not import, the command line

def test_syntax_error_is_one_paragraph_and_exit_code_2(tmp_path, capsys):
    text = edit(REFERENCE_TEXT, ("nn.Linear(1024, num_classes)", "nn.Linear(1024, num_classes"))
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as stop:
        run_cli(check.main, [str(path)])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = line_of(text, "nn.Linear(1024, num_classes")
    assert err.startswith(f"error: {path}, line {line}: SyntaxError: '(' was never closed.\n")
    assert "Traceback" not in err and "nothing was checked" in err


def test_error_at_import_names_the_line(tmp_path):
    text = edit(REFERENCE_TEXT, ("import torch.nn as nn\n", "import torch.nn as nn\nx = undefined_name\n"))
    line = line_of(text, "x = undefined_name")
    with pytest.raises(UserError, match=rf"raised NameError: name 'undefined_name' is not defined \(line {line} of"):
        check.main([str(write(tmp_path, text))])


def test_missing_file_and_help(tmp_path, capsys):
    with pytest.raises(UserError, match="missing.py: no such file"):
        check.main([str(tmp_path / "missing.py")])
    with pytest.raises(SystemExit) as stop:
        check.main(["--help"])
    assert stop.value.code == 0
    assert "your resnet.py, with the BEGIN/END BLANK lines" in capsys.readouterr().out


def test_command_line_on_the_reference():
    done = subprocess.run([sys.executable, str(ROOT / "check.py")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.endswith("9 of 9 blanks pass; 90 of 90 points\n")
