"""The autograder's local try, as docs/grading.md gives it, with a relative tree and a relative interpreter."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from submissions import run_grade

ROOT = Path(__file__).resolve().parent.parent


def test_local_try_with_relative_paths(tmp_path):
    assert run_grade(["autograder", "-o", str(tmp_path / "autograder.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        assert "probes.py" in archive.namelist()  # the grader's probes, shared with check.py
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
