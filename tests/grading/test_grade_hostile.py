"""A hostile cohort: submissions that try to forge their results, smuggle a host file into them, or kill the batch.

Nothing a submission's processes write is believed but their answers to the grader's probes (docs/grading.md,
"Trust boundary"): each hostile file below tries one way around that, and must end as a row of its own (0
points, "could not be graded", a review flag) or as what its own code earns, while the batch finishes and
the honest submission beside it keeps its 90 points. Under bubblewrap, as CI runs them.
"""
import csv
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from submissions import edit, run_grade

from grading.sandbox import bwrap_problem

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason=f"no bubblewrap here: {bwrap_problem()}")
KILL_RUNNER = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"  # the runner is the job's parent


def at_import(code: str, text: str = REFERENCE) -> str:
    """The file with `code` run at import, right after its imports."""
    return edit(text, ("import torch.nn as nn\n", "import torch.nn as nn\n" + code))


FORGED = json.dumps({"isolated": True, "cpu": 1.0, "jobs": {"submitted": {"tests": {}, "probes": {}}}})
WRONG_FC = edit(REFERENCE, ("nn.Linear(1024, num_classes)", "nn.Linear(1024, 10)"))


def hostile_files(secret: Path) -> dict[str, str]:
    """student -> the file; `secret` is a file of the grading machine that must never reach a result."""
    return {
        "honest": REFERENCE,
        "forges_its_report": at_import(f"open('report.json', 'w').write({FORGED!r})\n" + KILL_RUNNER),
        "rewrites_its_builds": at_import("""
from pathlib import Path
for _path in Path(__file__).parent.glob("splice_*.py"):
    try:
        _path.chmod(0o644)
        _path.write_text(_path.read_text().replace("nn.Linear(1024, 10)", "nn.Linear(1024, num_classes)"))
    except OSError:
        pass
""", WRONG_FC),
        "links_its_output": at_import(f"""
import os
for _name in ("output.txt", "report.json", "plan.json"):
    try:
        os.remove(_name)
    except OSError:
        pass
    os.symlink({str(secret)!r}, _name)
""" + KILL_RUNNER),
        "pipes_its_output": at_import("""
import os
for _name in ("output.txt", "report.json"):
    os.mkfifo(_name)
""" + KILL_RUNNER),
        "patches_the_grader": at_import("""
import json, sys
_fingerprint = sys.modules.get("fingerprint")
if _fingerprint:
    _fingerprint.probe_all = lambda *args, **kwargs: {"fc": 5}
json.dumps = lambda *args, **kwargs: '{"tests": {"forged": [true, 1]}, "probes": {"fc": 5}}'
"""),
        "hogs_memory_in_a_thread": at_import("""
import threading
def _hog():
    _blocks = []
    try:
        while True:
            _blocks.append(bytearray(2**26))
    except MemoryError:
        pass
threading.Thread(target=_hog, daemon=True).start()
"""),
        "oversized_answers": at_import("""
import json
json.dumps = lambda *args, **kwargs: '{"tests": {"x": [true, "' + 'x' * 2**25 + '"]}}'
"""),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Grade the hostile cohort in one batch: (the process, CSV rows, JSON results, the secret's token)."""
    token = f"host-secret-{uuid.uuid4().hex}"
    secret = tmp_path_factory.mktemp("host") / "secret.txt"
    secret.write_text(token)
    folder = tmp_path_factory.mktemp("hostile")
    for student, text in hostile_files(secret).items():
        (folder / f"{student}.py").write_text(text, encoding="utf-8")
    (folder / "linked.py").symlink_to(ROOT / "resnet.py")  # the grader's own reference
    (folder / "linked_folder").symlink_to(ROOT)  # holds a resnet.py
    subprocess.run(["mkfifo", str(folder / "named_pipe.py")], check=True)
    out = tmp_path_factory.mktemp("out")
    done = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), "--jobs", "2", "--sandbox",
                           "bwrap", "--csv", str(out / "grades.csv"), "--json", str(out / "results.json")],
                          check=False, capture_output=True, text=True, timeout=900)
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return done, rows, json.loads((out / "results.json").read_text()), token


def ungraded(rows: dict, student: str) -> str:
    """The notes of a student that must have been refused: 0 points and a review flag."""
    row = rows[student]
    assert row["total"] == "0" and row["review"], row
    assert row["notes"].startswith("could not be graded: "), row["notes"]
    return row["notes"]


@needs_bwrap
def test_the_batch_finishes_with_a_row_for_everyone(hostile):
    done, rows, _, _ = hostile
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert set(rows) == {*hostile_files(Path("x")), "linked", "linked_folder", "named_pipe"}
    assert rows["honest"]["total"] == "90" and not rows["honest"]["review"]


@needs_bwrap
def test_a_forged_report_is_not_believed(hostile):
    _, rows, _, _ = hostile
    assert "no answers" in ungraded(rows, "forges_its_report")


@needs_bwrap
def test_the_job_files_cannot_be_rewritten(hostile):
    _, rows, _, _ = hostile
    assert rows["rewrites_its_builds"]["fc"] == "0" and rows["rewrites_its_builds"]["total"] == "85"


@needs_bwrap
def test_no_host_file_reaches_a_result(hostile):
    done, rows, results, token = hostile
    ungraded(rows, "links_its_output")
    assert token not in done.stdout + done.stderr + json.dumps(rows) + json.dumps(results)


@needs_bwrap
def test_a_thread_that_fills_the_memory_beside_the_grading_is_not_graded(hostile):
    _, rows, _, _ = hostile  # whether it met the tests or not would change from run to run: it is refused each time
    assert "started 1 thread(s) of its own" in ungraded(rows, "hogs_memory_in_a_thread")


@needs_bwrap
def test_a_pipe_in_the_job_folder_hangs_nothing(hostile):
    _, rows, _, _ = hostile
    assert "no answers" in ungraded(rows, "pipes_its_output")


@needs_bwrap
def test_patched_grader_functions_make_malformed_answers(hostile):
    _, rows, _, _ = hostile
    assert "not what the runner writes" in ungraded(rows, "patches_the_grader") or \
        "malformed" in ungraded(rows, "patches_the_grader")
    assert "larger than 16 MB" in ungraded(rows, "oversized_answers")


@needs_bwrap
def test_links_pipes_and_devices_are_refused(hostile):
    _, rows, _, _ = hostile
    assert "linked.py is a symbolic link" in ungraded(rows, "linked")
    assert "is a symbolic link" in ungraded(rows, "linked_folder")
    assert "named_pipe.py is a named pipe" in ungraded(rows, "named_pipe")


def test_a_grader_failure_on_one_submission_is_its_row(tmp_path, monkeypatch, capsys):
    import grading.judge

    real = grading.judge.text_verdicts

    def fails_on_one(ref, text):
        if "FAIL-THE-GRADER" in text:
            raise RuntimeError("a bug of the grader")
        return real(ref, text)

    monkeypatch.setattr(grading.judge, "text_verdicts", fails_on_one)
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "unlucky.py").write_text("# FAIL-THE-GRADER\n" + REFERENCE, encoding="utf-8")
    (folder / "syntax.py").write_text(REFERENCE.replace("out = self.layer(x)", "out = self.layer(x"), encoding="utf-8")
    assert run_grade(["check", str(folder), "--csv", str(tmp_path / "grades.csv")]) == 0
    err = capsys.readouterr().err
    log = tmp_path / "grades.errors.log"
    assert err.count(str(log)) == 1 and "Traceback" not in err
    assert "RuntimeError: a bug of the grader" in log.read_text()
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["unlucky"]["notes"].startswith("could not be graded: the grader failed on it")
    assert "the whole file did not import: SyntaxError" in rows["syntax"]["review"]


@needs_bwrap
def test_the_sandbox_works_with_a_venv_under_tmp(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True,
                   timeout=120)
    done = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "from grading.sandbox import bwrap_problem; print(bwrap_problem())"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "None", done.stdout + done.stderr


def test_skeleton_to_dev_stdout_is_written_in_place():
    done = subprocess.run([sys.executable, str(ROOT / "grade.py"), "skeleton", "-o", "/dev/stdout"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "# BEGIN BLANK fc" in done.stdout and Path("/dev/stdout").is_symlink()


LEAKS_THE_HOST = '''\
import os, sys
_launcher = open("/proc/1/cmdline", "rb").read().split(b"\\0")  # bubblewrap's own command line: the host binds
_host = [_launcher[i - 1].decode() for i, arg in enumerate(_launcher) if arg in (b"/grader", b"/job")]
raise RuntimeError(" ".join(_host + [sys.prefix, os.path.expanduser("~"), os.environ.get("HOME", "")]))
'''


@needs_bwrap
def test_nothing_of_the_host_reaches_the_results(tmp_path):
    """A submission reads the host's folders from its sandbox's /proc and puts them in its error message."""
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "nosy.py").write_text(edit(REFERENCE, ("import torch\n", LEAKS_THE_HOST + "import torch\n")))
    out = tmp_path / "out"
    assert run_grade(["check", str(tmp_path / "subs"), "--csv", str(out / "g.csv"), "--json", str(out / "r.json")]) == 0
    written = (out / "g.csv").read_text() + (out / "r.json").read_text()
    assert "<grader> <job>" in written and "<python>" in written  # what it read: each host folder, a word
    import os
    import tempfile

    from grading import PACKAGE
    for host in (str(ROOT), str(PACKAGE), sys.prefix, str(Path.home()), tempfile.gettempdir() + "/grade-"):
        assert host not in written, host
    assert f"/{os.environ.get('USER', 'nobody')}/" not in written
