"""The Gradescope autograder: the zip to upload, and the grading it runs on each submission.

The zip holds setup.sh and run_autograder at its root (as Gradescope expects), the grader (grade.py, grading/,
and the project's modules they import, followed as the handout follows its own: today course/cli.py and
course/assignment.py), the reference resnet.py, the per-layer tests and a requirements file pinned to the
versions installed here. run_autograder grades ROOT/submission/resnet.py and
writes ROOT/results/results.json (ROOT is /autograder unless AUTOGRADER_ROOT says otherwise).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from course.cli import write_atomically
from grading import LAYER_TESTS, PACKAGE, REFERENCE, ROOT
from grading.handout import imported_files
from grading.intake import one_student
from grading.judge import Grade, Options, grade_file
from grading.report import student_results

SCRIPTS = ("setup.sh", "run_autograder")
PINNED = ("torch", "numpy", "pytest")


def requirements() -> str:
    """A requirements file pinned to the versions of this machine (torch from the CPU wheel index)."""
    lines = ["# pinned by `python grade.py autograder` to the versions it was tested with"]
    for name in PINNED:
        try:
            lines.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            lines.append(name)
    return "\n".join(lines) + "\n"


def zip_members() -> dict[str, Path]:
    """Name in the zip -> file here, for everything but the scripts and the requirements."""
    grader = {}
    for path in sorted(PACKAGE.rglob("*")):
        skip = {"__pycache__", "gradescope"}  # the scripts go to the top of the zip
        if path.is_file() and not skip & set(path.relative_to(PACKAGE).parts) and path.suffix in (".py", ".md"):
            grader[f"grading/{path.relative_to(PACKAGE).as_posix()}"] = path
    # grade.py, grading/, and every module of the project they import (the reference and its tests aside)
    imported = imported_files(["grade.py", *(name for name in grader if name.endswith(".py"))],
                              never=("resnet.py", "tests/"))
    members = {name: ROOT / name for name in imported if name not in grader}
    members["resnet.py"] = REFERENCE
    members["tests/test_resnet.py"] = LAYER_TESTS
    return members | grader


def build_zip() -> tuple[bytes, list[str]]:
    """The autograder zip, and the names in it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for script in SCRIPTS:
            info = zipfile.ZipInfo(script)
            info.external_attr = 0o100755 << 16  # executable
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (PACKAGE / "gradescope" / script).read_bytes())
        info = zipfile.ZipInfo("requirements.txt")
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, requirements())
        for name, path in zip_members().items():
            archive.write(path, name)
        names = archive.namelist()
    return buffer.getvalue(), names


def no_submission() -> dict:
    """The results when no resnet.py was submitted."""
    return {"score": 0, "tests": [],
            "output": "No resnet.py (or notebook) was found in your submission: upload your resnet.py file."}


def run_autograder(root: Path, options: Options) -> tuple[Path, Grade | None]:
    """Grade root/submission's resnet.py into root/results/results.json; return that path and the grade."""
    results = root / "results" / "results.json"
    submission = one_student(root / "submission", "submission")
    grade = grade_file(submission, options) if submission and not submission.problem else None
    data = student_results(grade) if grade else no_submission()
    write_atomically(results, json.dumps(data, indent=2) + "\n")
    os.chmod(results, 0o644)
    return results, grade
