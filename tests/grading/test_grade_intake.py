"""grading/intake.py: every file a TA downloads ends in exactly one row, whatever its form and layout.

The layouts are built here as the systems write them (names and folders); reading needs no sandbox. One batch
runs end to end through `grade.py check` to show the rows reach the CSV.
"""
import csv
import json
import zipfile
from pathlib import Path

import pytest
from submissions import run_grade

from course.cli import UserError
from grading.intake import find_submissions, python_text

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
OLD = REFERENCE.replace("# BEGIN BLANK", "# an older attempt\n# BEGIN BLANK", 1)


def notebook(*cells: tuple[str, str]) -> str:
    """A Jupyter notebook (nbformat 4) of (cell type, source) cells."""
    return json.dumps({"cells": [{"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True),
                                  **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                                 for kind, source in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def zipped(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def rows(target: Path) -> dict:
    intake = find_submissions(target)
    assert sum(s.files for s in intake.submissions) <= intake.files_seen
    return {s.student: s for s in intake.submissions}


def test_a_notebook_is_its_code_cells_in_order_with_magics_commented_out():
    half = REFERENCE.index("class ResNet50")
    text = python_text("alice.ipynb", notebook(("markdown", "# My ResNet\nnot code"), ("code", "%matplotlib inline\n"),
                                               ("code", REFERENCE[:half]), ("code", REFERENCE[half:])).encode())
    assert text == "# %matplotlib inline\n" + REFERENCE
    with pytest.raises(UserError, match="not a Jupyter notebook"):
        python_text("broken.ipynb", b"{not json")


def test_every_form_in_a_folder_gets_one_row(tmp_path):
    (tmp_path / "alice.py").write_text(REFERENCE)
    (tmp_path / "bob.ipynb").write_text(notebook(("code", REFERENCE)))
    (tmp_path / "carol.py.txt").write_text(REFERENCE)
    (tmp_path / "dave" / "lab2" / "src").mkdir(parents=True)  # as some systems export: deeper than dave/resnet.py
    (tmp_path / "dave" / "lab2" / "src" / "resnet.py").write_text(REFERENCE)
    (tmp_path / "dave" / "lab2" / "README.md").write_text("my notes")
    (tmp_path / "erin").mkdir()
    (tmp_path / "erin" / "report.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "frank.docx").write_bytes(b"PK")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    found = rows(tmp_path)
    assert sorted(found) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert found["alice"].text is None and found["alice"].path == tmp_path / "alice.py"  # read by the grader itself
    assert found["bob"].read() == REFERENCE and found["carol"].read() == REFERENCE
    assert found["dave"].path.name == "resnet.py" and "lab2/README.md" in found["dave"].review[0]
    assert "nothing to grade" in found["erin"].problem and ".pdf" in found["erin"].problem
    assert "nothing to grade" in found["frank"].problem
    intake = find_submissions(tmp_path)
    assert intake.files_seen == 7 and intake.summary().startswith("saw 7 file(s): 6 row(s)")


def test_a_student_with_two_files_gets_the_one_with_the_markers_and_a_flag(tmp_path):
    (tmp_path / "gina").mkdir()
    (tmp_path / "gina" / "helpers.py").write_text("import torch\n")
    (tmp_path / "gina" / "ResNet.ipynb").write_text(notebook(("code", REFERENCE)))
    (tmp_path / "gina.py").write_text(OLD)  # and a loose file of the same name: one student, one row
    gina = rows(tmp_path)["gina"]
    assert gina.path.name in ("ResNet.ipynb", "gina.py") and gina.files == 3
    assert "2 other file(s) of this student, not graded" in gina.review[0] and "helpers.py" in gina.review[0]


def test_canvas_download_grades_the_latest_resubmission(tmp_path):
    archive = zipped(tmp_path / "submissions.zip", {
        "smithjohn_12345_67890_resnet.py": OLD,
        "smithjohn_12345_67999_resnet-1.py": REFERENCE,  # Canvas's name for a resubmission
        "doejane_LATE_222_333_resnet.py": REFERENCE,
    })
    found = rows(archive)
    assert sorted(found) == ["doejane", "smithjohn"]
    assert found["smithjohn"].read() == REFERENCE
    assert found["smithjohn"].path.name == "smithjohn_12345_67999_resnet-1.py"
    assert "smithjohn_12345_67890_resnet.py" in found["smithjohn"].review[0]


def test_moodle_download_names_each_student_by_the_folder(tmp_path):
    archive = zipped(tmp_path / "moodle.zip", {
        "Ana María López_4521_assignsubmission_file_/resnet.py": REFERENCE,
        "Bo Chen_4522_assignsubmission_file_/ResNet (1).ipynb": notebook(("code", REFERENCE)),
        "Bo Chen_4522_assignsubmission_onlinetext_/onlinetext.html": "<p>see file</p>",
    })
    found = rows(archive)
    assert sorted(found) == ["Ana María López", "Bo Chen"] and found["Bo Chen"].read() == REFERENCE
    assert "onlinetext.html" in found["Bo Chen"].review[0]


def test_blackboard_download_grades_the_latest_attempt_and_skips_receipts(tmp_path):
    folder = tmp_path / "bb"
    folder.mkdir()
    zipped(folder / "gradebook.zip", {
        "Lab 3_kim7_attempt_2026-11-02-09-15-00.txt": "Name: Kim\nSubmission Field:\n",
        "Lab 3_kim7_attempt_2026-11-02-09-15-00_resnet.py": OLD,
        "Lab 3_kim7_attempt_2026-11-03-20-01-44.txt": "Name: Kim\n",
        "Lab 3_kim7_attempt_2026-11-03-20-01-44_resnet.py": REFERENCE,
    })
    intake = find_submissions(folder)
    (kim,) = intake.submissions
    assert kim.student == "kim7" and kim.read() == REFERENCE and "2026-11-02-09-15-00_resnet.py" in kim.review[0]
    assert intake.files_seen == 4 and "2 receipt(s) or metadata of the download" in intake.summary()


def test_gradescope_export_names_students_from_its_metadata(tmp_path):
    archive = zipped(tmp_path / "export.zip", {
        "assignment_77_export/submission_metadata.yml": (
            ":submission_1001:\n  :submitters:\n  - :name: Priya Raman\n    :sid: '9'\n  :score: 0\n"
            ":submission_1002:\n  :submitters:\n  - :name: Tom Berg\n"),
        "assignment_77_export/submission_1001/resnet.py": REFERENCE,
        "assignment_77_export/submission_1002/resnet.py": REFERENCE,
        "assignment_77_export/submission_1003/resnet.py": REFERENCE,  # not in the metadata: named by its folder
    })
    assert sorted(rows(archive)) == ["Priya Raman", "Tom Berg", "submission_1003"]


def test_a_students_own_zip_is_their_folder_and_a_damaged_one_still_gets_a_row(tmp_path):
    zipped(tmp_path / "hana.zip", {"hana-lab/resnet.py": REFERENCE, "hana-lab/notes.txt": "just notes"})
    (tmp_path / "ivan.zip").write_bytes(b"PK\x03\x04 cut short")
    found = rows(tmp_path)
    assert sorted(found) == ["hana", "ivan"] and found["hana"].read() == REFERENCE
    assert found["ivan"].problem and "nothing to grade" in found["ivan"].problem


def test_links_and_files_too_large_are_rows_that_say_so(tmp_path):
    (tmp_path / "jo.py").symlink_to(ROOT / "resnet.py")
    (tmp_path / "kay.py").write_bytes(b"#" * (2**20 + 10))
    found = rows(tmp_path)
    assert "symbolic link" in found["jo"].problem and "larger than" in found["kay"].problem


def test_a_folder_of_nothing_gradable_is_a_clear_error(tmp_path):
    zipped(tmp_path / "g.zip", {"submission_metadata.yml": ":submission_1:\n"})
    with pytest.raises(UserError, match="holds no submission"):
        find_submissions(tmp_path / "g.zip")


def test_grade_py_writes_one_csv_row_per_student(tmp_path, capsys):
    subs = tmp_path / "subs"
    (subs / "dave" / "src").mkdir(parents=True)
    (subs / "dave" / "src" / "resnet.py").write_text(REFERENCE)
    (subs / "bob.ipynb").write_text(notebook(("code", "!pip install torchsummary\n" + REFERENCE)))
    (subs / "erin.pdf").write_bytes(b"%PDF")
    assert run_grade(["check", str(subs), "--csv", str(tmp_path / "g.csv"), "--jobs", "2"]) == 0
    with open(tmp_path / "g.csv", newline="") as f:
        table = {row["student"]: row for row in csv.DictReader(f)}
    assert sorted(table) == ["bob", "dave", "erin"]
    assert table["bob"]["total"] == table["dave"]["total"] == "90" and table["erin"]["total"] == "0"
    assert "nothing to grade" in table["erin"]["notes"] and table["erin"]["review"]
    assert "saw 3 file(s): 3 row(s), one per student" in capsys.readouterr().err


def test_csv_cells_that_start_like_a_formula_are_made_text():
    from grading.judge import BlankGrade, Grade
    from grading.report import csv_text

    blanks = [BlankGrade("fc", 5, "", [], None, "missing", [], points=0)]
    names = ["=HYPERLINK(\"http://x\",\"a\")", "+1", "-2", "@SUM(A1)", "\tTab", "ordinary-name"]
    grades = [Grade(name, Path(f"{i}.py"), blanks, review=["=1+1"]) for i, name in enumerate(names)]
    table = list(csv.reader(csv_text(grades, ["fc"]).splitlines()))
    assert sorted(row[0] for row in table[1:]) == sorted([f"'{name}" for name in names[:-1]] + ["ordinary-name"])
    assert all(row[3] == "'=1+1" for row in table[1:])  # the review column too


def test_ctrl_c_keeps_the_graded_rows_and_resume_grades_only_the_rest(tmp_path):
    import signal
    import subprocess
    import sys

    subs, table = tmp_path / "subs", tmp_path / "grades.csv"
    subs.mkdir()
    for name in ("ann", "ben"):  # one left after the first: its sandbox takes seconds, for Ctrl-C to land
        (subs / f"{name}.py").write_text(REFERENCE)
    command = [sys.executable, str(ROOT / "grade.py"), "check", str(subs), "--csv", str(table), "--jobs", "1"]
    # SIGINT as in a terminal, even where this test runs in the background (there it is inherited ignored)
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in batch.stderr:  # Ctrl-C once the first student is graded, as a TA would press it
        seen.append(line)
        if line.startswith("[1/2] "):
            batch.send_signal(signal.SIGINT)
            break
    out, err = batch.communicate(timeout=300)
    err = "".join(seen) + err
    assert batch.returncode == 130 and "Traceback" not in out + err
    with open(table, newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    graded = [s for s, row in rows.items() if row["total"] == "90"]
    pending = [s for s, row in rows.items() if row["review"] == "not graded yet: the batch was interrupted"]
    assert sorted(graded + pending) == sorted(rows) == ["ann", "ben"] and pending
    assert f"the other {len(pending)} rows of {table} say" in err and "again with --resume" in err
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("] ") == len(pending)  # only the students not graded yet
    with open(table, newline="") as f:
        assert {row["student"]: row["total"] for row in csv.DictReader(f)} == dict.fromkeys(rows, "90")
