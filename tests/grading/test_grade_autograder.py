"""The autograder's zip: what the grader's process imports goes in; its local try, as docs/grading.md gives it,
with a relative tree and a relative interpreter."""
import json
import os
import subprocess
import sys
import zipfile

from submissions import run_grade

from grading import ROOT
from grading.autograder import zip_members
from grading.handout import local_imports


def test_the_zip_carries_every_module_the_grader_imports():
    members = zip_members()
    assert {"grade.py", "course/cli.py", "course/assignment.py", "resnet.py", "tests/test_resnet.py",
            "grading/__init__.py", "grading/judge.py", "grading/runner.py", "grading/fingerprint.py"} <= set(members)
    for name in [name for name in members if name.endswith(".py") and name != "tests/test_resnet.py"]:
        assert local_imports(ROOT / name, never=()) <= set(members), name  # what each imports came along
    # nothing the grader does not import: no training code, no torch-heavy course module, no other tests
    assert not {name for name in members if name.startswith("course/")} - {"course/cli.py", "course/assignment.py"}
    assert not {"main.py", "check.py", "utils.py", "tests/submissions.py", "tests/conftest.py"} & set(members)


def test_local_try_with_relative_paths(tmp_path):
    assert run_grade(["autograder", "-o", str(tmp_path / "autograder.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        # the assignment's facts, shared with check.py, and the helpers the grader imports
        assert {"course/assignment.py", "course/cli.py"} <= set(archive.namelist())
        archive.extractall(tmp_path / "ag" / "source")
    (tmp_path / "ag" / "source" / "run_autograder").chmod(0o755)
    (tmp_path / "ag" / "submission").mkdir()
    (tmp_path / "ag" / "submission" / "resnet.py").write_text((ROOT / "resnet.py").read_text(encoding="utf-8"),
                                                               encoding="utf-8")
    python = os.path.relpath(sys.executable, tmp_path)  # as a TA types `PYTHON=.venv/bin/python`
    env = {**os.environ, "AUTOGRADER_ROOT": "ag", "PYTHON": python}
    done = subprocess.run(["ag/source/run_autograder"], cwd=tmp_path, env=env, check=False, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "ag" / "results" / "results.json").read_text())["score"] == 90
