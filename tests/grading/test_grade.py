"""Tests of grade.py: the skeleton, the verdicts, the sandbox and the batch outputs.

The student files are made here by editing the text of the reference resnet.py.
Grading starts a sandboxed process per submission (each imports torch, a few
seconds), so the submissions are graded in two batch runs, shared by the tests.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import side_by_side
from submissions import edit, run_grade

from course.assignment import find_blanks
from grading.compare import PADDING_NOTE, STRIDE_NOTE, Reference, compare
from grading.markers import fill_blanks, make_skeleton, reference_blanks

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_TEXT = (ROOT / "resnet.py").read_text(encoding="utf-8")

DOWN_1X1 = "conv1x1(in_channels, middle_channels, stride=2, padding=0),  # middle x H/2 x W/2"
DOWN_3X3 = "conv3x3(middle_channels, middle_channels, stride=1, padding=1),  # middle x H/2 x W/2"
SAME_3X3 = "conv3x3(middle_channels, middle_channels, stride=1, padding=1),  # middle x H x W"



def blank_lines(text: str, blank_id: str) -> tuple[int, int]:
    """1-based line numbers of a blank's BEGIN and END lines."""
    blank = find_blanks(text)[0][blank_id]
    return blank.begin + 1, blank.end + 1


def without_lines(text: str, *numbers: int) -> str:
    """The text without the given 1-based lines."""
    return "".join(line for i, line in enumerate(text.splitlines(keepends=True), 1) if i not in numbers)


def equivalent_text() -> str:
    """Every blank right, written differently: positional/keyword, spacing, comments, alternatives."""
    first_block = find_blanks(REFERENCE_TEXT)[0]["layer4"].lines[0]
    five_more = " " * 12 + "*[ResidualBlock(1024, 256, 1024, False) for _ in range(5)],\n"
    return edit(
        fill_blanks(REFERENCE_TEXT, {"layer4": [first_block, five_more]}),
        (DOWN_1X1, "conv1x1(in_channels,middle_channels,2,0),   # stride 2 here"),
        (DOWN_3X3, "conv3x3(middle_channels, middle_channels, stride=(1, 1), padding=1),"),
        ("conv1x1(in_channels, middle_channels, stride=1, padding=0),  # middle x H x W",
         ("conv1x1(in_channels=in_channels, out_channels=middle_channels,\n"
          "                        stride=1, padding=0),")),
        ("nn.Conv2d(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3),",
         "torch.nn.Conv2d(3, 64, (7, 7), 2, 3),"),
        ("nn.MaxPool2d(kernel_size=3, stride=2, padding=1),", "nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True),"),
        ("ResidualBlock(64, 64, 256, downsample=False),", "ResidualBlock(64, 64, 256),"),
        ("nn.AvgPool2d(kernel_size=2, stride=1)", "nn.AdaptiveAvgPool2d((1, 1))"),
        ("nn.Linear(1024, num_classes)", "nn.Linear(in_features=1024, out_features=num_classes, bias=True)"),
    )


def mangled_text() -> str:
    """fc's marker lines removed, avgpool's END line changed: both blanks are missing."""
    begin, end = blank_lines(REFERENCE_TEXT, "fc")
    text = without_lines(REFERENCE_TEXT, begin, end)
    return edit(text, ("# END BLANK avgpool", "# END avgpool"))


def several_mistakes_text() -> str:
    """layer2 downsamples in its first block, layer3 has 64 middle channels, fc is 2048 wide."""
    return edit(
        REFERENCE_TEXT,
        ("ResidualBlock(64, 64, 256, downsample=False),", "ResidualBlock(64, 64, 256, downsample=True),"),
        ("ResidualBlock(256, 64, 256, downsample=True),", "ResidualBlock(256, 64, 256, downsample=False),"),
        *[(f"ResidualBlock({c}, 128, 512,", f"ResidualBlock({c}, 64, 512,") for c in (256, 512, 512, 512)],
        ("nn.Linear(1024, num_classes)", "nn.Linear(2048, num_classes)"),
    )


SUBMISSIONS = {  # student -> (file text, expected points per blank that are not full)
    "reference": (REFERENCE_TEXT, {}),
    "equivalent": (equivalent_text(), {}),
    # two classic mistakes in two blanks that build nothing of each other: one file (a sandbox costs seconds)
    "stride_on_3x3_no_padding": (edit(REFERENCE_TEXT, (DOWN_1X1, DOWN_1X1.replace("stride=2", "stride=1")),
                                      (DOWN_3X3, DOWN_3X3.replace("stride=1", "stride=2")),
                                      (SAME_3X3, SAME_3X3.replace("padding=1", "padding=0"))),
                                 {"block_downsample": 0, "block_same": 0}),
    "several_mistakes": (several_mistakes_text(), {"layer2": 0, "layer3": 0, "fc": 0}),
    "mangled_markers": (mangled_text(), {"avgpool": 0, "fc": 0}),
    # harmless global changes at import: the probes are drawn in float32 from their own generators
    "float64_and_own_seed": (edit(REFERENCE_TEXT, ("import torch\n", "import torch\ntorch.set_default_dtype(torch."
                                                   "float64)\ntorch.manual_seed(7)\ntorch.set_num_threads(1)\n")), {}),
}
FULL = {"block_downsample": 20, "block_same": 20, "stem_conv": 5, "stem_pool": 5,
        "layer2": 10, "layer3": 10, "layer4": 10, "avgpool": 5, "fc": 5}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Grade SUBMISSIONS in one batch run: (stdout, CSV rows by student, JSON results by student)."""
    folder = tmp_path_factory.mktemp("submissions")
    for student, (text, _) in SUBMISSIONS.items():
        path = folder / student / "resnet.py" if student == "equivalent" else folder / f"{student}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), "--details",
                             "--csv", str(out / "grades.csv"), "--json", str(out / "results.json")],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    results = json.loads((out / "results.json").read_text())
    return result.stdout, rows, results


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Grade files that never reach the tests: JSON results by student. Only the files that block on purpose get a
    short --timeout (a working file could miss it on a loaded machine)."""
    def at_import(code: str) -> str:
        """The reference with code run at import, before torch is imported (so it fails fast)."""
        return edit(REFERENCE_TEXT, ("import torch\n", code + "import torch\n"))

    fails_at_import = {"syntax_error": edit(REFERENCE_TEXT, ("out = self.layer(x)", "out = self.layer(x")),
                       "memory_hog": at_import("hog = bytearray(64 * 2**30)\n"),
                       "exits": at_import("import sys\nsys.exit(3)\n"),
                       "network": at_import("import socket\nsocket.create_connection(('127.0.0.1', 9))\n"),
                       "paren_in_blank": edit(REFERENCE_TEXT, ("self.fc = nn.Linear(1024, num_classes)",
                                                              "self.fc = nn.Linear(1024, num_classes")),
                       "missing_package": at_import("from torchsummary import summary\n")}
    blocks = {"endless_loop": at_import("while True:\n    pass\n"),
              "sleeps": at_import("import time\ntime.sleep(3600)\n"),
              "ignores_sigterm": at_import("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                           "time.sleep(3600)\n")}

    def grade(files: dict[str, str], *options: str):
        """A function that grades `files` in one batch run and returns the JSON results by student."""
        folder = tmp_path_factory.mktemp("broken")
        for student, text in files.items():
            (folder / f"{student}.py").write_text(text, encoding="utf-8")
        json_path = folder.parent / f"{folder.name}.json"

        def run() -> dict:
            result = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), *options, "--json",
                                     str(json_path)], check=False, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr
            return json.loads(json_path.read_text())
        return run

    # the two batches side by side: the second one mostly waits for its timeouts
    imported, blocked = side_by_side(grade(fails_at_import), grade(blocks, "--timeout", "5"))
    return fails_at_import | blocks, imported | blocked


# ------------------------------------------------------------------ skeleton

def test_skeleton_filled_with_the_answers_is_the_reference():
    skeleton = make_skeleton(REFERENCE_TEXT)
    answers = {b.id: b.lines for b in reference_blanks(REFERENCE_TEXT).values()}
    assert fill_blanks(skeleton, answers).encode() == REFERENCE_TEXT.encode()
    assert find_blanks(skeleton)[0].keys() == answers.keys()  # the markers stay
    compile(skeleton, "skeleton", "exec")
    assert "self.avgpool = None  # fill in here (5 points)" in skeleton


def test_skeleton_command_writes_file_and_refuses_the_reference(tmp_path, capsys):
    output = tmp_path / "student" / "resnet.py"
    assert run_grade(["skeleton", "-o", str(output)]) == 0
    assert output.read_text() == make_skeleton(REFERENCE_TEXT)
    assert run_grade(["skeleton", "-o", str(ROOT / "resnet.py")]) == 2
    assert capsys.readouterr().err.startswith("error: -o ")
    assert (ROOT / "resnet.py").read_text(encoding="utf-8") == REFERENCE_TEXT


def test_skeleton_imports_and_fails_the_per_layer_tests(tmp_path):
    skeleton = tmp_path / "resnet.py"
    skeleton.write_text(make_skeleton(REFERENCE_TEXT))
    run = ("import json, sys; from grading.runner import run_pytest; "
           "print('RESULTS ' + json.dumps(run_pytest(sys.argv[1:])))")  # the runner's own way to read the outcomes
    done = subprocess.run([sys.executable, "-c", run, str(ROOT / "tests" / "test_resnet.py"), "--impl", str(skeleton)],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    results = json.loads(done.stdout.split("RESULTS ", 1)[1])
    assert results["test_course_alias"][0]  # the skeleton imports cleanly
    assert not any(passed for name, (passed, _) in results.items() if name.startswith("test_layer_shape"))
    assert sum(not passed for passed, _ in results.values()) >= 10


# ------------------------------------------------------------------ verdicts without running anything

@pytest.mark.parametrize("blank_id,answer,verdict", [
    ("avgpool", "self.avgpool = nn.AvgPool2d(2)", "equivalent"),
    ("avgpool", "self.avgpool = nn.AvgPool2d(kernel_size=(2, 2), stride=5)", "equivalent"),
    ("avgpool", "self.avgpool = nn.AdaptiveAvgPool2d(output_size=1)", "equivalent"),
    ("avgpool", "self.avgpool = nn.AvgPool2d(2, padding=1)", "different"),
    ("avgpool", "self.avgpool = nn.AdaptiveAvgPool2d(2)", "different"),
    ("avgpool", "self.pool = nn.AdaptiveAvgPool2d(1)", "different"),
    ("avgpool", "self.avgpool = None  # fill in here", "missing"),
    ("stem_conv", "nn.Conv2d(3, 64, 7, 2, 2),", "different"),  # 15x15, not 16x16
    ("stem_pool", "nn.MaxPool2d(3, 2, 0),", "different"),  # 7x7, not 8x8
    ("stem_pool", "nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),", "equivalent"),
    ("layer4", "*[ResidualBlock(1024, 256, 1024)] * 6,", "different"),  # one block, shared 6 times
    ("fc", "self.fc = nn.Linear(1024, 10)", "different"),
    ("block_same", ("conv1x1(in_channels, middle_channels, stride=1, padding=0)  # no comma\n"
                    "conv3x3(middle_channels, middle_channels, 1, 1)"), "different"),
    ("block_same", "# nothing yet\n", "missing"),
])
def test_verdicts(blank_id, answer, verdict):
    reference = Reference.load()
    assert compare(reference, blank_id, [answer + "\n"])[0] == verdict


# ------------------------------------------------------------------ grading submissions

@pytest.mark.parametrize("student", SUBMISSIONS)
def test_points_per_blank(batch, student):
    _, rows, results = batch
    expected = {**FULL, **SUBMISSIONS[student][1]}
    assert {b: int(rows[student][b]) for b in FULL} == expected
    assert int(rows[student]["total"]) == results[student]["score"] == sum(expected.values())
    assert {t["name"]: t["score"] for t in results[student]["tests"]} == expected


def verdicts(results, student):
    """blank -> the verdict line of its Gradescope output."""
    return {t["name"]: t["output"].splitlines()[0].removeprefix("verdict: ") for t in results[student]["tests"]}


def output(results, student, blank_id):
    return next(t["output"] for t in results[student]["tests"] if t["name"] == blank_id)


def test_reference_and_equivalent_verdicts(batch):
    _, _, results = batch
    assert set(verdicts(results, "reference").values()) == {"same"}
    assert verdicts(results, "equivalent") == {**dict.fromkeys(FULL, "equivalent"), "layer3": "same"}
    assert "accepted alternative" in output(results, "equivalent", "avgpool")
    assert "accepted alternative" in output(results, "equivalent", "stem_pool")


def test_classic_mistakes_are_explained(batch):
    stdout, _, results = batch
    stride = output(results, "stride_on_3x3_no_padding", "block_downsample")
    assert "verdict: different" in stride and STRIDE_NOTE in stride and PADDING_NOTE not in stride
    assert "FAIL test_block_downsamples" in stride and "test_block_keeps_size" not in stride
    padding = output(results, "stride_on_3x3_no_padding", "block_same")
    assert "verdict: different" in padding and PADDING_NOTE in padding and STRIDE_NOTE not in padding
    assert "FAIL test_block_keeps_size" in padding and "test_block_downsamples" not in padding
    layer2 = output(results, "several_mistakes", "layer2")
    assert "downsample=True, the reference has downsample=False" in layer2
    assert "its shapes are right" in layer2  # same shapes, other design
    assert "what it builds differs" in layer2
    assert "middle_channels=64, the reference has middle_channels=128" in output(results, "several_mistakes", "layer3")
    assert "in_features=2048, the reference has in_features=1024" in output(results, "several_mistakes", "fc")
    assert "Total: 50/90" in stdout.split("Submission: stride_on_3x3_no_padding")[1].split("Submission:")[0]


def test_broken_markers_give_missing(batch):
    _, rows, results = batch
    assert verdicts(results, "mangled_markers")["avgpool"] == "missing"
    assert "has no END BLANK line" in output(results, "mangled_markers", "avgpool")
    assert "were not found" in output(results, "mangled_markers", "fc")
    assert "avgpool: missing" in rows["mangled_markers"]["notes"]


def test_batch_csv_and_json_layout(batch):
    _, rows, results = batch
    assert list(rows) == sorted(SUBMISSIONS)
    assert list(rows["reference"]) == ["student", *FULL, "total", "review", "notes"]
    assert set(results) == set(SUBMISSIONS)
    for test in results["reference"]["tests"]:
        assert set(test) == {"name", "score", "max_score", "output"} and test["max_score"] == FULL[test["name"]]


def test_files_that_do_not_import_have_each_blank_graded_alone(broken):
    files, results = broken
    reviews = {student: results[student]["output"] for student in files}
    line = next(i for i, text in enumerate(files["syntax_error"].splitlines(), 1) if text.endswith("self.layer(x"))
    alone = "each blank was graded alone in the reference's code, the rest of the file was not run"
    assert f"review: the whole file did not import: SyntaxError line {line}" in reviews["syntax_error"]
    assert "the whole file did not import: exceeded the memory limit (4 GB) while importing" in reviews["memory_hog"]
    assert "the whole file did not import: it called sys.exit(3)" in reviews["exits"]
    assert "network use is blocked while grading" in reviews["network"]
    assert "No module named 'torchsummary'" in reviews["missing_package"]
    for student in ("syntax_error", "memory_hog", "exits", "network", "missing_package"):  # errors outside the blanks
        assert results[student]["score"] == 90 and alone in reviews[student], student
    # an unmatched parenthesis inside one blank costs that blank only
    assert results["paren_in_blank"]["score"] == 85
    assert {t["name"]: t["score"] for t in results["paren_in_blank"]["tests"]}["fc"] == 0
    # a file that blocks is killed at --timeout, and looked at by hand
    for student in ("endless_loop", "sleeps", "ignores_sigterm"):
        assert reviews[student].splitlines()[0] == "could not be graded: timed out after 5 s"  # SIGKILL: no SIGTERM
        assert results[student]["score"] == 0
    assert "review: could not be graded: timed out after 5 s: look at it by hand" in reviews["sleeps"]
    assert "review: line 21: code added outside the blanks: while True: / pass" in reviews["endless_loop"]


def test_single_file_report_and_json(tmp_path, capsys):
    student = tmp_path / "erin.py"  # a syntax error is found without running anything
    student.write_text(edit(REFERENCE_TEXT, ("self.fc = nn.Linear(1024, num_classes)", "self.fc = nn.Linear(1024,")))
    assert run_grade(["check", str(student), "--json", str(tmp_path / "results.json")]) == 0
    report = capsys.readouterr().out
    assert "the whole file did not import: SyntaxError line" in report and "\nTotal: 85/90\n" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 85 and [t["name"] for t in results["tests"]] == list(FULL)
    assert results["output"].startswith("review: the whole file did not import: SyntaxError")


# ------------------------------------------------------------------ command-line errors

@pytest.mark.parametrize("argv,message", [
    (["check", "no/such/file.py"], "no such file or folder"),
    (["check", "{empty}"], "holds no submission"),
    (["check", "resnet.py", "--timeout", "0"], "must be a positive number"),
    (["check", "resnet.py", "--jobs", "0"], "must be a positive whole number"),
    (["check", "{ref}", "--csv", "{ref}"], "would overwrite"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{empty}", str(tmp_path)).replace("{ref}", str(ROOT / "resnet.py")) for a in argv]
    assert run_grade(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_reference_that_built_is_not_built_again_and_a_broken_one_stops_the_batch(tmp_path, monkeypatch):
    import importlib.metadata

    from course.cli import UserError
    from grading.reference import ReferenceAnswers

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ref = Reference.load()
    first, again = ReferenceAnswers(ref), ReferenceAnswers(ref)
    try:
        first.check()
        assert first.process is not None  # built every blank, in the reference's process
        again.check()
        assert again.process is None  # the mark of the first check: nothing built, no process started
    finally:
        first.close()
        again.close()

    def no_metadata(name):
        raise importlib.metadata.PackageNotFoundError(name)

    with monkeypatch.context() as patch:  # a torch whose version cannot be read: no mark is believed or written
        patch.setattr(importlib.metadata, "version", no_metadata)
        unknown = ReferenceAnswers(ref)
        assert unknown.mark() is None
        unknown.close()
    broken = Reference.load()
    broken.text += "\nraise RuntimeError('a TA broke the reference')\n"
    answers = ReferenceAnswers(broken)
    try:
        with pytest.raises(UserError, match="building the reference's modules failed"):
            answers.check()
    finally:
        answers.close()
    assert len(list((tmp_path / "resnet50-cifar10" / "grader").iterdir())) == 1  # no mark for the broken one
