"""The reference's answers to the probes, for any seed: computed outside the sandbox, where no student code runs.

One process per batch (`python fingerprint.py --serve DIR`) imports torch and the reference's files once,
keeps the modules it builds, and answers each request with the fingerprints for one seed. The files are
the same spliced files a student's answers are built from (splice.py), and the reference whole.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from course import assignment
from course.assignment import PROBES
from course.cli import UserError, user_cache, write_atomically
from grading import PACKAGE
from grading.compare import Reference
from grading.sandbox import environment
from grading.splice import splice

ASSIGNMENT = Path(assignment.__file__)  # the probes and the blanks' rules
KINDS = ("splice", "full")  # an answer spliced alone into the reference's code; the reference whole


def file_name(kind: str, blank_id: str) -> str:
    """The reference file that answers for a blank: its splice, or the whole reference."""
    return f"ref_splice_{blank_id}.py" if kind == "splice" else "ref_full.py"


class ReferenceAnswers:
    """The reference's fingerprints per (seed, kind, blank), asked of one long-lived trusted process."""

    def __init__(self, ref: Reference, timeout: float = 600.0):
        self.ref, self.timeout = ref, timeout  # seconds a request may take: every wait has a deadline
        self.folder = tempfile.TemporaryDirectory(prefix="grade-reference-")
        for blank_id in ref.blanks:
            (Path(self.folder.name) / file_name("splice", blank_id)).write_text(
                splice(ref, blank_id, ref.blanks[blank_id].lines), encoding="utf-8")
        (Path(self.folder.name) / file_name("full", "")).write_text(ref.text, encoding="utf-8")
        self.process: subprocess.Popen | None = None
        self.cache: dict[tuple[int, str, str], list[dict]] = {}
        self.cpu = 0.0
        self.lock = threading.Lock()

    def answers(self, seed: int, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict]]:
        """(kind, blank) -> the reference's fingerprints for that seed, computed once each."""
        with self.lock:
            missing = [(kind, b) for kind, b in dict.fromkeys(wanted) if (seed, kind, b) not in self.cache]
            if missing:
                for (kind, b), probes in zip(missing, self.ask(seed, missing), strict=True):
                    self.cache[seed, kind, b] = probes
            return {(kind, b): self.cache[seed, kind, b] for kind, b in wanted}

    def ask(self, seed: int, wanted: list[tuple[str, str]]) -> list[list[dict]]:
        """One request to the process (started on first use); a reference that does not build stops grading."""
        if self.process is None:
            self.process = subprocess.Popen([sys.executable, "-s", str(PACKAGE / "fingerprint.py"), "--serve",
                                             self.folder.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            env=environment(self.folder.name, str(PACKAGE / "sandbox_site")),
                                            text=True, start_new_session=True)  # Ctrl-C is the batch's to handle
        request = {"seed": seed, "want": [[file_name(kind, b), b, PROBES[b]] for kind, b in wanted]}
        deadline = threading.Timer(self.timeout, self.process.kill)  # a late reply ends the process: EOF below
        deadline.start()
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            reply = json.loads(self.process.stdout.readline())
        except (OSError, ValueError):
            raise UserError("building the reference's modules failed: the process that builds them stopped "
                            "or did not answer in time (see the lines above)") from None
        finally:
            deadline.cancel()
        self.cpu = reply["cpu"]
        for (kind, b), probes in zip(wanted, reply["answers"], strict=True):
            if any("error" in p or "error" in p.get("output", {}) for p in probes):
                raise UserError(f"the reference's blank {b} does not build ({kind}): {probes}"[:500])
        return reply["answers"]

    def check(self) -> None:
        """Build every blank of the reference once, so that a broken reference stops the batch before it starts.
        A reference that built before, with the same grader, Python and torch, is not built again: a mark in the
        user's cache says so (5 s of every batch on 2 cores)."""
        mark = self.mark()
        if mark is not None and mark.is_file():
            return
        self.answers(0, [(kind, b) for kind in KINDS for b in self.ref.blanks])
        if mark is not None:
            with contextlib.suppress(OSError):  # a cache that cannot be written only costs the check next time
                write_atomically(mark, "")

    def mark(self) -> Path | None:
        """The mark of this reference building, named by what decides it: its text, the grader's code, Python and
        torch (None when torch's version cannot be read without importing it: then the check runs every batch)."""
        key = hashlib.sha256(self.ref.text.encode())
        for path in sorted([*PACKAGE.glob("*.py"), ASSIGNMENT]):
            key.update(path.read_bytes())
        try:  # read from the installed package's metadata: importing torch here would cost 2 s
            torch_version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:  # a torch installed without its metadata
            return None
        key.update(f"{sys.executable} {sys.version} {torch_version}".encode())
        return user_cache("grader", f"reference-builds-{key.hexdigest()[:32]}")

    def close(self) -> None:
        """End the process and remove its files."""
        if self.process is not None:
            with self.process:  # closes its pipes and waits for it
                self.process.kill()  # it keeps nothing: no need to wait for torch's teardown (about a second)
        self.folder.cleanup()
