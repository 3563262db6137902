"""A realistic cohort, graded in one batch as a TA would (`grade.py check DIR --jobs 2`).

Each student file is the reference with the edits a student makes, written from the kinds of case
of issue 15: files Python reads but a naive grader does not, right answers in unusual forms, answers
outside the markers, code added outside the blanks, and the classic mistakes. Each case states the
points a careful human grader gives each blank that does not earn its full points.
"""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from submissions import INLINE_NESTED

from grading.builds import own_part
from grading.judge import BUILD_NOTE

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
FULL = {"block_downsample": 20, "block_same": 20, "stem_conv": 5, "stem_pool": 5,
        "layer2": 10, "layer3": 10, "layer4": 10, "avgpool": 5, "fc": 5}

DOWNSAMPLE = """\
                conv1x1(in_channels, middle_channels, stride=2, padding=0),  # middle x H/2 x W/2
                conv3x3(middle_channels, middle_channels, stride=1, padding=1),  # middle x H/2 x W/2
                conv1x1(middle_channels, out_channels, stride=1, padding=0),  # out x H/2 x W/2
"""
SAME = """\
                conv1x1(in_channels, middle_channels, stride=1, padding=0),  # middle x H x W
                conv3x3(middle_channels, middle_channels, stride=1, padding=1),  # middle x H x W
                conv1x1(middle_channels, out_channels, stride=1, padding=0),  # out x H x W
"""
INLINE_FLAT = """\
                nn.Conv2d(in_channels, middle_channels, 1, 2), nn.BatchNorm2d(middle_channels), nn.ReLU(),
                nn.Conv2d(middle_channels, middle_channels, 3, padding=1), nn.BatchNorm2d(middle_channels), nn.ReLU(),
                nn.Conv2d(middle_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(),
"""
HARDCODED = """\
                conv1x1(64, 64, stride=1, padding=0),
                conv3x3(64, 64, stride=1, padding=1),
                conv1x1(64, 256, stride=1, padding=0),
"""
FC = """\
        self.fc = nn.Linear(1024, num_classes)  # num_classes
        # END BLANK fc
"""
AFTER_FC = """\
        self.fc = None  # fill in here (5 points)
        # END BLANK fc
        self.fc = nn.Linear(1024, num_classes)
"""
SEVENTH = """\
            # END BLANK layer4
            ResidualBlock(1024, 256, 1024),
"""
MONKEYPATCH = """\
import torch.nn as nn

_Conv2d = nn.Conv2d


class _Padded(_Conv2d):
    \"\"\"Every 3x3 convolution gets padding 1, whatever the block asked for.\"\"\"

    def __init__(self, *args, **kwargs):
        if args[2:3] == (3,) or kwargs.get("kernel_size") == 3:
            kwargs["padding"] = 1
        super().__init__(*args, **kwargs)


nn.Conv2d = _Padded
"""


HELPER = """\
def make_stage(in_channels, middle, out, count, down_first=False):
    \"\"\"`count` blocks; only the last one (or the first) downsamples.\"\"\"
    return [ResidualBlock(in_channels if i == 0 else out, middle, out, downsample=i == (0 if down_first else count - 1))
            for i in range(count)]


class ResNet50(nn.Module):"""


def edit(text: str, *replacements: tuple[str, str]) -> str:
    """The text with each (old, new) replaced once; old must be there."""
    for old, new in replacements:
        assert old in text, f"the reference no longer contains {old!r}: update the test"
        text = text.replace(old, new, 1)
    return text


def answered(blank_id: str, items: str, text: str = REFERENCE) -> str:
    """The text with a blank's answer replaced by `items`."""
    begin, end = text.index(f"# BEGIN BLANK {blank_id}"), text.index(f"# END BLANK {blank_id}")
    first_line_end, last_line_start = text.index("\n", begin) + 1, text.rindex("\n", 0, end) + 1
    return text[:first_line_end] + items + text[last_line_start:]


def with_helper(call: str) -> str:
    """The reference with layer2 built by a helper defined outside the blanks."""
    return answered("layer2", f"            *{call},\n", edit(REFERENCE, ("class ResNet50(nn.Module):", HELPER)))


COHORT = {  # student -> (file bytes, points of the blanks that lose any, words every review flag list holds)
    "bom_from_windows": (b"\xef\xbb\xbf" + REFERENCE.replace("\n", "\r\n").encode(), {}, []),
    "latin1_with_coding_line": (("# -*- coding: latin-1 -*-\n# Réponses de l'étudiant, élève n° 7\n"
                                 + REFERENCE).encode("latin-1"), {}, []),
    # two students' forms in one file where they are in blanks that build nothing of each other (a file: seconds)
    "constant_arithmetic_and_comprehension_over_i": (
        answered("layer4", "            *[ResidualBlock(512 if i == 0 else 1024, 256, 1024) for i in range(6)],\n",
                 edit(REFERENCE, ("ResidualBlock(64, 64, 256, downsample=False),",
                                  "ResidualBlock(64, 64, 64 * 4, downsample=False),"),
                      ("nn.Linear(1024, num_classes)", "nn.Linear(1024 * 1 * 1, num_classes)"))).encode(), {}, []),
    "inline_layers": (edit(REFERENCE, (DOWNSAMPLE, INLINE_NESTED)).encode(), {}, []),
    "inline_layers_ungrouped": (edit(REFERENCE, (DOWNSAMPLE, INLINE_FLAT)).encode(), {"block_downsample": 0}, []),
    "hardcoded_channels_and_fc_for_ten_classes_only": (
        edit(REFERENCE, (SAME, HARDCODED), ("nn.Linear(1024, num_classes)", "nn.Linear(1024, 10)")).encode(),
        {"block_same": 0, "fc": 0}, []),
    "answer_after_the_end_marker": (edit(REFERENCE, (FC, AFTER_FC)).encode(), {},
                                    ["just after END BLANK fc", "the answer is just outside the markers"]),
    "seventh_block_after_layer4": (edit(REFERENCE, ("            # END BLANK layer4\n", SEVENTH)).encode(),
                                   {"layer4": 0}, ["just after END BLANK layer4", "code added outside the blanks"]),
    "monkeypatched_conv2d": (edit(REFERENCE, ("import torch.nn as nn\n", MONKEYPATCH),
                                  (SAME, SAME.replace("stride=1, padding=1", "stride=1, padding=0"))).encode(),
                             {"block_same": 0}, ["code added outside the blanks: _Conv2d = nn.Conv2d"]),
    "removed_the_weight_init": (edit(REFERENCE, ("        self._init_weights()\n", "")).encode(), {},
                                ["code removed outside the blanks", "self._init_weights()"]),
    "a_student_with_a_name_of_more_than_twenty_characters": (REFERENCE.encode(), {}, []),
    "helper_outside_the_blanks": (with_helper("make_stage(64, 64, 256, 3)").encode(), {},
                                  ["code added outside the blanks: def make_stage", "(a helper): look by hand"]),
    "helper_downsampling_first": (with_helper("make_stage(64, 64, 256, 3, down_first=True)").encode(),
                                  {"layer2": 0}, ["code added outside the blanks: def make_stage"]),
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Grade COHORT in one batch: (stdout, CSV rows by student, JSON results by student)."""
    folder = tmp_path_factory.mktemp("cohort")
    for student, (data, _, _) in COHORT.items():
        (folder / f"{student}.py").write_bytes(data)
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), "--jobs", "2",
                             "--csv", str(out / "grades.csv"), "--json", str(out / "results.json")],
                            check=False, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return result.stdout, rows, json.loads((out / "results.json").read_text())


def listing_blocks(stdout: str) -> dict[str, list[str]]:
    """The batch listing: student -> the indented lines under the student's line."""
    blocks: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line and not line.startswith(" ") and not line.startswith("wrote "):
            blocks[line.split()[0]] = []
        elif line.startswith("    "):
            blocks[list(blocks)[-1]].append(line)
    return blocks


def blank(results: dict, student: str, blank_id: str) -> str:
    """The output (verdict, notes, tests) of one blank of one student."""
    return next(t["output"] for t in results[student]["tests"] if t["name"] == blank_id)


@pytest.mark.parametrize("student", COHORT)
def test_points_as_a_careful_grader_gives_them(cohort, student):
    _, rows, results = cohort
    expected = {**FULL, **COHORT[student][1]}
    assert {b: int(rows[student][b]) for b in FULL} == expected
    assert results[student]["score"] == sum(expected.values())


@pytest.mark.parametrize("student", COHORT)
def test_review_flags_in_csv_and_listing(cohort, student):
    stdout, rows, _ = cohort
    words = COHORT[student][2]
    assert all(w in rows[student]["review"] for w in words)
    assert bool(rows[student]["review"]) == bool(words)  # flagged exactly when something changed outside
    flags = [line for line in listing_blocks(stdout)[student] if line.startswith("    review: ")]
    assert len(flags) == (len(rows[student]["review"].split(" | ")) if words else 0)


def test_unusual_but_right_forms_are_equivalent(cohort):
    _, _, results = cohort
    both = "constant_arithmetic_and_comprehension_over_i"
    assert blank(results, both, "layer2").startswith("verdict: equivalent")
    assert blank(results, both, "fc").startswith("verdict: equivalent")
    assert blank(results, both, "layer4").startswith("verdict: equivalent")
    inline = blank(results, "inline_layers", "block_downsample")
    assert inline.startswith("verdict: equivalent") and BUILD_NOTE in inline and "in form:" in inline
    for student in ("bom_from_windows", "latin1_with_coding_line"):
        assert {t["output"].split("\n")[0] for t in results[student]["tests"]} == {"verdict: same"}


def test_wrong_builds_are_explained(cohort):
    _, rows, results = cohort
    ungrouped = blank(results, "inline_layers_ungrouped", "block_downsample")
    assert "grouped differently" in ungrouped and "checkpoint's weights would not load" in ungrouped
    both = "hardcoded_channels_and_fc_for_ten_classes_only"
    assert "ResidualBlock(12, 4, 20, False)" in blank(results, both, "block_same")
    assert "ResNet50(7).fc" in blank(results, both, "fc") and "ResNet50(7).fc" not in blank(results, both, "block_same")
    assert "it has 7 parts where the reference has 6" in rows["seventh_block_after_layer4"]["notes"]
    assert "padding=0 on the 3x3" in rows["monkeypatched_conv2d"]["notes"]  # every note, not only the first
    assert "what it builds differs" in rows["monkeypatched_conv2d"]["notes"]


def test_listing_aligns_any_name_length(cohort):
    stdout, _, _ = cohort
    totals = [line for line in stdout.splitlines() if re.search(r"\s\d+/90(  REVIEW)?$", line)]
    assert len(totals) == len(COHORT)
    assert len({line.index("/90") for line in totals}) == 1


def test_own_part_of_a_layer_leaves_out_the_blocks():
    probe = {"label": "x", "tree": [["", "S", ""], ["0", "R", ""], ["0.layer", "S", ""], ["0.layer.0", "C", "1"],
                                    ["0.shortcut", "C", "2"]],
             "params": [["0.layer.0.weight", [1]], ["0.shortcut.weight", [2]]], "distinct": 2, "output": {}}
    own = own_part([probe], "layer2")[0]
    assert [row[0] for row in own["tree"]] == ["", "0", "0.layer", "0.shortcut"]
    assert own["params"] == [["0.shortcut.weight", [2]]] and "output" not in own
    assert own_part([probe], "fc") == [probe]
