"""Hostile submissions: under bubblewrap they cannot write outside their folder, reach the network, read the
reference answers, or leave a process running after the batch. Without bubblewrap the grader says so, loudly.

Each hostile file is the student skeleton (no answers in it) plus code that runs at import and tries one
thing; every attempt is wrapped so that the file still imports, and what got through is checked here.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from grading.markers import make_skeleton
from grading.sandbox import SYSTEM_DIRS, bwrap_problem, python_folders

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
SKELETON = make_skeleton(REFERENCE)
ANSWER = "conv1x1(in_channels, middle_channels, stride=2, padding=0)"  # a line of a reference answer
assert ANSWER in REFERENCE and ANSWER not in SKELETON
needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason=f"no bubblewrap here: {bwrap_problem()}")


def hostile(code: str, text: str = SKELETON) -> str:
    """The file with `code` run at import, right after its imports."""
    return text.replace("import torch.nn as nn\n", "import torch.nn as nn\n" + code, 1)


def writes_outside(outside: Path) -> str:
    """Try to write outside the sandbox: a file, a shell command, the grader's own folder, the project."""
    targets = [outside / "written.txt", ROOT / "grading" / "pwned.txt", ROOT / "tests" / "pwned.txt"]
    return hostile(f"""
import os
for target in {[str(t) for t in targets]!r} + ["/grader/pwned.txt", os.path.expanduser("~/../pwned.txt")]:
    try:
        open(target, "w").write("written by a student")
    except OSError:
        pass
os.system("echo system > {outside / 'system.txt'} 2>/dev/null")
""")


def outlives(token: str, outside: Path) -> str:
    """Start a child in a new session that sleeps, then writes a file: it must not outlive the batch."""
    return hostile(f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3); open({str(outside / 'late.txt')!r}, 'w')",
                  "{token}"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen(["setsid", "sh", "-c", "sleep 300", "{token}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
""")


def raw_socket(port: int) -> str:
    """Connect to a server of the grading machine through `_socket`, under `socket`'s block."""
    return hostile(f"""
import _socket
try:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    s.connect(("127.0.0.1", {port}))
    s.sendall(b"leaked")
except OSError:
    pass
""")


def reads_answers() -> str:
    """Look for a reference answer in every file the submission can read around it; fail the import if found.

    Under bubblewrap the folder above the job's is /, so every folder the sandbox sees is searched, each once, but
    the host's system folders and its Python installations outside the project: the sandbox binds them read-only as
    they are, no file of the project or the grader is in them, and reading their 200,000 files (2.5 GB here) was
    most of this module's time. The Python folders inside the project (a .venv) are searched.
    """
    places = [str(ROOT / "resnet.py"), str(ROOT / "tests" / "test_grade.py"), str(ROOT), "/grader", "/sandbox", "/tmp"]
    hosts = sorted(str(folder) for folder in {*map(Path, SYSTEM_DIRS), *python_folders()}
                   if ROOT not in (folder, *folder.parents) and folder not in ROOT.parents)  # neither in nor around it
    return hostile(f"""
import os
from pathlib import Path
_ANSWER = {ANSWER[:30]!r} + {ANSWER[30:]!r}  # never whole in this file
_found, _searched = [], set({hosts!r})  # the host's folders count as searched
for _place in {places!r} + [os.getcwd(), str(Path(__file__).parent), str(Path(__file__).parent.parent)]:
    _paths = [_place] if os.path.isfile(_place) else []
    for _folder, _subfolders, _names in os.walk(_place) if _place not in _searched else []:
        _searched.add(_folder)
        _subfolders[:] = [_name for _name in _subfolders if os.path.join(_folder, _name) not in _searched]
        _paths += [os.path.join(_folder, _name) for _name in _names]
    for _path in _paths:
        try:
            if os.path.isfile(_path) and os.path.getsize(_path) < 2**20 and _ANSWER in Path(_path).read_text(
                    errors="ignore"):
                _found.append(_path)
        except OSError:
            pass
if _found:
    raise RuntimeError("read a reference answer in " + ", ".join(_found[:3]))
""")


def runs_once() -> str:
    """The reference, whose top-level code fails the second time it runs in the same sandbox."""
    return hostile("""
import os
_runs = int(open("runs.txt").read()) if os.path.exists("runs.txt") else 0
open("runs.txt", "w").write(str(_runs + 1))
if _runs:
    raise RuntimeError("the top-level code ran twice")
""", REFERENCE)


class Listener:
    """A TCP server on 127.0.0.1 that records whether anyone connected."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        """Accept connections until stopped."""
        while not self.stop.is_set():
            try:
                self.server.accept()[0].close()
                self.connections += 1
            except OSError:
                pass

    def close(self) -> int:
        """Stop; the number of connections seen."""
        self.stop.set()
        self.thread.join()
        self.server.close()
        return self.connections


def processes_with(token: str) -> dict[int, str]:
    """pid -> command line of the processes of this machine whose command line holds `token`."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and token in cmdline:
            found[int(entry.name)] = cmdline
    return found


def grade(folder: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `grade.py check FOLDER --json` with the options; (the process, results by student)."""
    results = folder.parent / f"{folder.name}.json"
    done = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(folder), "--json", str(results),
                           *options], check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done, json.loads(results.read_text())


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """Grade the hostile files in bubblewrap: (results, folder they tried to write in, token, connections)."""
    outside = tmp_path_factory.mktemp("outside")
    folder = tmp_path_factory.mktemp("hostile")
    token = f"grading-test-{uuid.uuid4().hex}"
    listener = Listener()
    files = {"writes_outside": writes_outside(outside), "outlives_the_batch": outlives(token, outside),
             "raw_socket": raw_socket(listener.port), "reads_answers": reads_answers(), "runs_once": runs_once()}
    for student, text in files.items():
        (folder / f"{student}.py").write_text(text, encoding="utf-8")
    try:
        done, results = grade(folder, "--sandbox", "bwrap", "--jobs", "2")
        left = processes_with(token)
        time.sleep(4)  # the late writer would have written by now
        connections = listener.close()
        yield results, outside, left, connections, done
    finally:
        for name in ("grading/pwned.txt", "tests/pwned.txt"):
            (ROOT / name).unlink(missing_ok=True)
        for pid in processes_with(token):  # never leave one of ours behind, even if the test failed
            os.kill(pid, signal.SIGKILL)


@needs_bwrap
def test_nothing_written_outside(hostile_batch):
    results, outside, _, _, _ = hostile_batch
    assert results["writes_outside"]["output"].splitlines()[0].startswith("review:")  # it imported
    assert not list(outside.iterdir())
    assert not (ROOT / "grading" / "pwned.txt").exists() and not (ROOT / "tests" / "pwned.txt").exists()


@needs_bwrap
def test_nothing_outlives_the_batch(hostile_batch):
    _, outside, left, _, _ = hostile_batch
    assert left == {}
    assert not (outside / "late.txt").exists()


@needs_bwrap
def test_no_network_even_through_raw_sockets(hostile_batch):
    results, _, _, connections, _ = hostile_batch
    assert connections == 0
    assert "did not import" not in results["raw_socket"]["output"]


@needs_bwrap
def test_reference_answers_cannot_be_read(hostile_batch):
    results, _, _, _, _ = hostile_batch
    assert "read a reference answer" not in results["reads_answers"]["output"]
    assert "did not import" not in results["reads_answers"]["output"]


@needs_bwrap
def test_top_level_code_runs_once(hostile_batch):
    results, _, _, _, done = hostile_batch
    assert results["runs_once"]["score"] == 90, results["runs_once"]
    assert "WARNING" not in done.stderr


def test_without_bubblewrap_the_grader_says_so_once(tmp_path):
    listener = Listener()
    (tmp_path / "raw_socket.py").write_text(raw_socket(listener.port), encoding="utf-8")
    (tmp_path / "runs_once.py").write_text(runs_once(), encoding="utf-8")
    done, results = grade(tmp_path, "--sandbox", "process")
    assert listener.close() == 0  # sitecustomize blocks `_socket` too
    assert done.stderr.count("WARNING") == 1 and "process limits only" in done.stderr
    assert results["runs_once"]["score"] == 90


def test_sandbox_options_are_checked():
    done = subprocess.run([sys.executable, str(ROOT / "grade.py"), "check", str(ROOT / "resnet.py"), "--sandbox",
                           "nothing"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: argument --sandbox: invalid choice")
