"""The grader's parts on their own, without running any submission: fast."""
import csv
import io
import os
from pathlib import Path

import pytest

from course.assignment import PROBES, find_blanks, label
from course.cli import UserError
from grading import ROOT
from grading.builds import same_build, tree_difference, valid
from grading.cli import write_output
from grading.compare import Reference, compare
from grading.forms import code_tokens
from grading.judge import BlankGrade, Grade
from grading.markers import as_utf8, make_skeleton, read_source, read_submission
from grading.outside import answers_outside, changes_outside
from grading.report import NOT_GRADED_YET, csv_text, finished_rows, listing, student_results
from grading.sandbox import bwrap_command, python_folders
from grading.splice import answers_file, splice

REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference.load()


@pytest.mark.parametrize("blank_id,answer,verdict", [
    ("layer2", ("ResidualBlock(64, 64, 64 * 4), ResidualBlock(256, 64, 2 ** 8),\n"
                "ResidualBlock(256, 64, 256, downsample=1 == 1),"), "equivalent"),
    ("layer4", "*[ResidualBlock(512 if i == 0 else 1024, 256, 1024) for i in range(6)],", "equivalent"),
    ("layer4", "ResidualBlock(512, 256, 1024), *(ResidualBlock(1024, 256, 1024) for j in range(1, 6)),",
     "equivalent"),
    ("layer3", "*[ResidualBlock(256 if i == 0 else 512, 128, 512, downsample=i == 3) for i in range(4)],",
     "equivalent"),
    ("layer4", "*[ResidualBlock(512, 256, 1024) for i in range(6)],", "different"),
    ("layer4", "*[ResidualBlock(512 if i == 0 else 1024, 256, 1024) for i in range(10 ** 6)],", "different"),
    ("fc", "self.fc = nn.Linear(1024 * 1 * 1, num_classes)", "equivalent"),
    ("fc", "self.fc = nn.Linear(1024 // 2, num_classes)", "different"),
    ("avgpool", '"""Average the 2x2 map."""\nself.avgpool = nn.AvgPool2d(2, stride=2)', "equivalent"),
    ("avgpool", "self.avgpool = nn.AdaptiveAvgPool2d([1, 1])", "equivalent"),
    ("avgpool", "self.avgpool: nn.Module = nn.AvgPool2d(kernel_size=2, stride=1)", "equivalent"),
    ("fc", "pass\nself.fc: nn.Linear = nn.Linear(1024, num_classes)", "equivalent"),
    ("stem_pool", "nn.MaxPool2d(kernel_size=[3, 3], stride=2, padding=1),", "equivalent"),
])
def test_unusual_forms(ref, blank_id, answer, verdict):
    assert compare(ref, blank_id, [answer + "\n"])[0] == verdict


def test_sources_are_read_as_python_reads_them(tmp_path):
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbf" + REFERENCE.encode())
    assert read_source(tmp_path / "bom.py") == REFERENCE
    latin = "# -*- coding: latin-1 -*-\n# élève\n" + REFERENCE
    (tmp_path / "latin.py").write_bytes(latin.encode("latin-1"))
    assert read_source(tmp_path / "latin.py") == latin
    assert as_utf8(latin).startswith("# -*- coding: utf-8 -*-\n# élève\n")
    (tmp_path / "bad.py").write_bytes(b"x = '\xff'\n")
    with pytest.raises(UserError, match="bad.py, line 1: byte 0xff is not utf-8 text"):
        read_source(tmp_path / "bad.py")
    (tmp_path / "nul.py").write_bytes(b"x = 1\ny = 2\0\n")  # the same words as check.py's: one decoder
    with pytest.raises(UserError, match="nul.py, line 2: a NUL"):
        read_source(tmp_path / "nul.py")


def test_submissions_are_regular_files_read_without_following_links(tmp_path):
    (tmp_path / "real.py").write_text(REFERENCE, encoding="utf-8")
    assert read_submission(tmp_path / "real.py") == REFERENCE
    (tmp_path / "link.py").symlink_to(ROOT / "resnet.py")
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "huge.py").write_bytes(b"#" * (2**20 + 1))
    for name, kind in [("link.py", "a symbolic link"), ("pipe.py", "a named pipe"), ("huge.py", "larger than")]:
        with pytest.raises(UserError, match=kind):
            read_submission(tmp_path / name)


def test_outputs_that_are_not_regular_files_are_written_in_place(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_output(link, "new")
    assert link.is_symlink() and target.read_text() == "new"  # never renamed over the link
    write_output(tmp_path / "plain.txt", "text")
    assert (tmp_path / "plain.txt").read_text() == "text"


def outside(ref: Reference, text: str):
    """The changes outside the blanks of a student's text."""
    return changes_outside(ref.text, ref.blanks, text, find_blanks(text)[0])


def test_changes_outside_the_blanks(ref):
    assert outside(ref, REFERENCE) == []
    cosmetic = REFERENCE.replace('"""1x1 convolution, batch-norm, ReLU."""', '"""Another docstring."""')
    cosmetic = cosmetic.replace("import torch\n", "import torch  # a comment\n\n# more\n")
    assert outside(ref, cosmetic) == []
    fc_end = "        # END BLANK fc\n"
    after = outside(ref, REFERENCE.replace(fc_end, fc_end + "        self.fc = nn.Linear(1024, 10)\n"))
    assert [(c.kind, c.near, c.where) for c in after] == [("added", "fc", "just after END BLANK fc")]
    assert answers_outside(after) == {"fc": ["        self.fc = nn.Linear(1024, 10)\n"]}
    removed = outside(ref, REFERENCE.replace("        self._init_weights()\n", ""))
    line = REFERENCE.splitlines().index("        self._init_weights()") + 1
    flag = f"code removed outside the blanks (reference line {line}): self._init_weights()"
    assert [c.flag() for c in removed] == [flag]
    changed = outside(ref, REFERENCE.replace("stride=2, padding=0)\n", "stride=1, padding=0)\n"))
    assert [c.kind for c in changed] == ["changed"] and "->" in changed[0].flag()


def test_no_file_given_to_the_sandbox_holds_a_reference_answer(ref):
    answers = {" ".join(code_tokens([line])) for b in ref.blanks.values() for line in b.lines}
    answers.discard("")
    student = {b: ["# the student's answer\n"] for b in ref.blanks}
    for text in [splice(ref, b, student[b]) for b in ref.blanks] + [answers_file(ref, {}), make_skeleton(REFERENCE)]:
        assert not answers & {" ".join(code_tokens([line])) for line in text.splitlines()}
        compile(text, "file", "exec")


def test_splice_reindents_an_answer(ref):
    text = splice(ref, "fc", ["\tself.fc = nn.Linear(1024, num_classes)\n"])
    assert "\n        self.fc = nn.Linear(1024, num_classes)\n" in text
    compile(text, "splice", "exec")


def probe(tree, output=None, **extra):
    """A fingerprint with the given tree, and a parameter named after its first convolution's path."""
    conv = next(row[0] for row in tree if row[1] == "Conv2d")
    return {"label": "ResidualBlock(1, 2, 3, True)", "tree": tree, "params": [[f"{conv}.weight", [2, 1, 1, 1]]],
            "distinct": 1, "output": output or {"shape": [2], "values": [1.0, 1.0]}, **extra}


def test_builds_compare_behaviour_not_spelling():
    nested = [["", "Sequential", ""], ["0", "Sequential", ""], ["0.0", "Conv2d", "1, 2"], ["0.1", "ReLU", ""]]
    flat = [["", "Sequential", ""], ["0", "Conv2d", "1, 2"], ["1", "ReLU", ""]]
    listed = [["", "Sequential", ""], ["0", "Sequential", ""], ["0.0", "Conv2d", "1, 2, kernel_size=[1, 1]"],
              ["0.1", "ReLU", ""]]
    assert "grouped differently" in tree_difference(flat, nested)
    assert same_build([probe(nested)], [probe(nested)])
    assert same_build([probe(listed)], [probe(nested)])  # a setting that changes nothing
    assert not same_build([probe(nested, {"shape": [2], "values": [1.0, 1.5]})], [probe(nested)])
    assert not same_build([probe(flat)], [probe(nested)])  # the parameter names differ: the checkpoint would not load
    labels = ["ResidualBlock(1, 2, 3, True)"]
    assert valid([probe(nested)], labels) is not None
    for junk in ["x", [1], [{"label": "x", "tree": "x"}], [probe(nested, {"shape": [2], "values": [[]]})],
                 [probe(nested, extra_field=1)], [probe(nested, {"shape": [2.5], "values": []})]]:
        assert valid(junk, labels) is None
    assert valid([probe(nested)], ["ResidualBlock(2, 2, 3, True)"]) is None  # not the probe that was asked for


def grades() -> list[Grade]:
    """Two grades: a long name with review flags and two notes, a short one with none."""
    lost = BlankGrade("fc", 5, "hint", [], ["x"], "different", ["first note", "second note"])
    kept = BlankGrade("avgpool", 5, "hint", [], ["x"], "same", [], points=5)
    return [Grade("a_student_with_a_long_long_name", Path("a.py"), [kept, lost], review=["flag one", "flag two"]),
            Grade("bo", Path("b.py"), [kept, BlankGrade("fc", 5, "hint", [], ["x"], "same", [], points=5)])]


def test_listing_and_csv_show_every_note_and_flag():
    lines = listing(grades())
    assert lines[0].index("5/10") == lines[-1].index("10/10") + 1 and lines[0].endswith("REVIEW")
    assert "    fc: different (first note; second note)" in lines
    assert "    review: flag one" in lines and "    review: flag two" in lines
    rows = list(csv.DictReader(io.StringIO(csv_text(grades(), ["avgpool", "fc"]))))
    assert rows[0]["review"] == "flag one | flag two" and "second note" in rows[0]["notes"]


def test_an_interrupted_csv_marks_the_students_not_graded_and_resume_keeps_the_rest():
    ids = ["avgpool", "fc"]
    first = csv_text(grades()[:1], ids, pending=["=bo", "cy"])  # interrupted after one student
    kept = finished_rows(first, ids)
    assert list(kept) == ["a_student_with_a_long_long_name"]  # the pending rows are not kept
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO(first))}
    assert rows["'=bo"]["review"] == NOT_GRADED_YET and rows["'=bo"]["total"] == ""
    finished = csv_text(grades()[1:], ids, kept=kept)  # --resume grades bo; the first row is kept as it was
    assert [row["student"] for row in csv.DictReader(io.StringIO(finished))] == ["a_student_with_a_long_long_name",
                                                                                  "bo"]
    with pytest.raises(UserError, match="not a grades CSV of this assignment"):
        finished_rows(first, ["fc"])


def test_students_see_hints_not_notes():
    results = student_results(grades()[0])
    visible = [t for t in results["tests"] if t["visibility"] == "visible"]
    assert [t["output"] for t in visible] == ["passed", "not yet right. Hint: hint"]
    assert {t["visibility"] for t in results["tests"] if "note" in t["output"]} == {"after_published"}
    assert next(t for t in results["tests"] if t["name"] == "review by staff")["visibility"] == "hidden"
    broken = grades()[1]
    broken.problem = "did not import: RuntimeError line 3: class ResNet50(nn.Module): ..."  # what it raised
    results = student_results(broken)
    assert results["output"] == "Your file could not be graded: did not import."
    assert next(t for t in results["tests"] if t["output"] == broken.problem)["visibility"] == "after_published"


def test_the_sandbox_never_sees_the_project():
    for folder in python_folders():
        assert folder != ROOT and folder not in ROOT.parents
        assert ROOT not in folder.parents or ".venv" in folder.parts
    command = " ".join(bwrap_command(Path("/tmp/job/in"), Path("/tmp/job/work"), ["python"]))
    assert f" {ROOT} " not in command and f"{ROOT}/tests" not in command and "--unshare-all" in command


def test_the_sandbox_labels_probes_as_the_grader_does():
    from grading import fingerprint  # its own copy of label: the sandbox cannot import course/

    assert [fingerprint.label(list(p)) for ps in PROBES.values() for p in ps] == [
        label(p) for ps in PROBES.values() for p in ps]
    assert fingerprint.BLOCK == PROBES["block_same"][0][0]


def test_a_blank_left_as_the_skeleton_gives_it_is_missing(ref):
    skeleton_blanks = find_blanks(make_skeleton(REFERENCE))[0]
    assert all(compare(ref, b.id, b.lines)[0] == "missing" for b in skeleton_blanks.values())
    assert compare(ref, "fc", ["        self.fc = None\n"])[0] == "missing"
