"""check.py and grade.py on files that are not clean UTF-8 Python, and with stdout closed early: never a traceback.

One test per script and input: a file that is not UTF-8, a Latin-1 file with a coding line (read as Python
reads it), an empty file, NUL bytes, a truncated file, and `| head` (stdout closed before the report).
"""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

import check
from course import assignment as spec
from course.cli import run_cli

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
INPUTS = {
    "not_utf8": ("# R\xe9ponses\n" + REFERENCE).encode("latin-1"),
    "latin1_with_coding_line": ("# -*- coding: latin-1 -*-\n# R\xe9ponses de l'\xe9l\xe8ve\n"
                                + REFERENCE).encode("latin-1"),
    "empty": b"",
    "nul_bytes": REFERENCE.encode().replace(b"import torch\n", b"import torch\n\0\0\n", 1),
    "truncated": REFERENCE.encode()[:len(REFERENCE) // 2],
}


def check_py(tmp_path: Path, capsys, name: str) -> tuple[int, str, str]:
    """check.py on one input, in-process as its command line runs it: (exit code, stdout, stderr)."""
    path = tmp_path / f"{name}.py"
    path.write_bytes(INPUTS[name])
    with pytest.raises(SystemExit) as stop:
        run_cli(check.main, [str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return stop.value.code, out, err


def test_check_py_on_a_file_that_is_not_utf8(tmp_path, capsys):
    code, out, err = check_py(tmp_path, capsys, "not_utf8")
    assert code == 2 and out == ""
    assert "line 1: byte 0xe9 is not utf-8 text" in err and "Save it as UTF-8" in err


def test_check_py_on_latin1_with_a_coding_line(tmp_path, capsys):
    code, out, _ = check_py(tmp_path, capsys, "latin1_with_coding_line")
    assert code == 0 and out.endswith("9 of 9 blanks pass; 90 of 90 points\n")


def test_check_py_on_an_empty_file(tmp_path, capsys):
    code, _, err = check_py(tmp_path, capsys, "empty")
    assert code == 2 and "is empty: nothing was checked" in err


def test_check_py_on_nul_bytes(tmp_path, capsys):
    code, _, err = check_py(tmp_path, capsys, "nul_bytes")
    line = REFERENCE.splitlines().index("import torch") + 2
    assert code == 2 and f"line {line}: a NUL (zero) byte" in err


def test_check_py_on_a_truncated_file(tmp_path, capsys):
    code, _, err = check_py(tmp_path, capsys, "truncated")
    assert code == 2 and "SyntaxError" in err and "nothing was checked" in err


def closed_stdout(command: list[str]) -> subprocess.CompletedProcess:
    """Run a command whose stdout is a pipe closed before it writes (as `| head` does): (exit code, stderr)."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(command, process.returncode, "", err.decode())


def test_check_py_with_stdout_closed_early():
    done = closed_stdout([sys.executable, "check.py", "resnet.py"])
    assert done.stderr == "" and done.returncode == 1


# ------------------------------------------------------------------ grade.py: the same inputs, graded as one folder

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """grade.py check on a folder of the inputs: (the process, CSV rows by student)."""
    folder = tmp_path_factory.mktemp("inputs")
    for name, data in INPUTS.items():
        (folder / f"{name}.py").write_bytes(data)
    csv_path = folder.parent / "inputs.csv"
    done = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), "--csv", str(csv_path)],
                          check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    with open(csv_path, newline="") as f:
        return done, {row["student"]: row for row in csv.DictReader(f)}


def test_grade_py_on_a_file_that_is_not_utf8(graded):
    row = graded[1]["not_utf8"]
    assert row["total"] == "0"
    assert "could not be graded: not_utf8.py, line 1: byte 0xe9 is not utf-8 text" in row["notes"]


def test_grade_py_on_latin1_with_a_coding_line(graded):
    row = graded[1]["latin1_with_coding_line"]
    assert row["total"] == "90" and not row["review"]


def test_grade_py_on_an_empty_file(graded):
    row = graded[1]["empty"]
    assert row["total"] == "0" and "code removed outside the blanks" in row["review"]


def test_grade_py_on_nul_bytes(graded):
    row = graded[1]["nul_bytes"]
    line = REFERENCE.splitlines().index("import torch") + 2  # the line check.py names too
    assert row["total"] == "0" and f"nul_bytes.py, line {line}: a NUL (zero) byte" in row["notes"]


def test_grade_py_on_a_truncated_file(graded):
    row = graded[1]["truncated"]
    # the blanks that arrived whole are graded alone, in the reference's code; the others' markers are missing
    arrived = spec.find_blanks(INPUTS["truncated"].decode())[0]
    assert 0 < len(arrived) < len(spec.BLANKS)
    assert row["total"] == str(sum(blank.points for blank in arrived.values()))
    assert "the whole file did not import: SyntaxError line" in row["review"]


def test_grade_py_with_stdout_closed_early(tmp_path):
    (tmp_path / "truncated.py").write_bytes(INPUTS["truncated"])  # its report needs no sandbox
    done = closed_stdout([sys.executable, "grade.py", "check", str(tmp_path / "truncated.py")])
    assert "Traceback" not in done.stderr and done.returncode == 1, done.stderr


@pytest.mark.parametrize("kind", ["folder", "notebook"])
def test_check_py_on_a_folder_or_a_notebook_says_what_it_needs(tmp_path, capsys, kind):
    given = tmp_path / ("student" if kind == "folder" else "resnet.ipynb")
    given.mkdir() if kind == "folder" else given.write_text('{"cells": []}')
    with pytest.raises(SystemExit) as stop:
        run_cli(check.main, [str(given)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert (f"is a folder: give the path of your resnet.py inside it, e.g. {given / 'resnet.py'}" in err
            if kind == "folder" else "is a Jupyter notebook; check.py reads a Python file" in err)
