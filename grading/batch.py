"""Grade many submissions, --jobs at a time; a failure of the grader on one becomes that one's row.

The reference's answers to the probes are computed outside the sandbox (reference.py), by one process
per batch; no student code runs there.
"""
from __future__ import annotations

import resource
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from course.cli import UserError, format_seconds
from grading.judge import Grade, Options, grade_file, ungraded
from grading.sandbox import UNGRADED


def cost(grades: list[Grade], options: Options, wall: float, jobs: int) -> str:
    """The batch's cost: wall time, and CPU seconds of the grader, the reference's answers and every sandbox."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = own.ru_utime + own.ru_stime + options.reference.cpu + sum(g.cpu for g in grades)
    return (f"graded {len(grades)} submission(s) in {format_seconds(wall)} with --jobs {jobs}: {cpu:.1f} CPU seconds "
            f"in all, {cpu / len(grades):.1f} per submission")


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, file) for each STUDENT.py and each STUDENT/resnet.py in a folder. Links are listed, never
    followed: grading refuses them (and pipes and devices) with a review flag."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            name, path = entry.name, entry / "resnet.py"
            if not path.exists() and not path.is_symlink():
                print(f"warning: skipped {entry}: no resnet.py inside", file=sys.stderr)
                continue
        elif entry.suffix == ".py" or entry.is_symlink():
            name, path = entry.stem if entry.suffix == ".py" else entry.name, entry
        else:
            continue
        if name in found:
            raise UserError(f"{folder}: two submissions for student {name}: {found[name]} and {path}")
        found[name] = path
    if not found:
        raise UserError(f"{folder} holds no submission: expected one STUDENT.py per student, "
                        f"or one folder per student with a resnet.py inside")
    return list(found.items())


def grade_all(submissions: list[tuple[str, Path]], options: Options, jobs: int,
              failures: list[str]) -> Iterator[Grade]:
    """Grade the submissions, `jobs` at a time; yield the grades in the order of the submissions. A grader
    failure on one submission makes its row ("could not be graded") and adds its traceback to `failures`."""
    def task(item: tuple[str, Path]) -> Grade:
        """Grade one (student, file)."""
        student, path = item
        try:
            return grade_file(path, student, options)
        except Exception:  # noqa: BLE001 - one submission never stops the batch
            failures.append(f"{student} ({path}):\n{traceback.format_exc()}")
            return ungraded(options, student, path, f"{UNGRADED}the grader failed on it (see the error log)")

    if jobs <= 1 or len(submissions) == 1:
        yield from map(task, submissions)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(task, submissions)
