"""Grade many submissions, --jobs at a time; a failure of the grader on one becomes that one's row.

The reference's answers to the probes are computed outside the sandbox (reference.py), by one process
per batch; no student code runs there.
"""
from __future__ import annotations

import resource
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from course.cli import format_seconds
from grading.intake import Submission
from grading.judge import Grade, Options, grade_file, ungraded
from grading.sandbox import UNGRADED


def cost(grades: list[Grade], options: Options, wall: float, jobs: int) -> str:
    """The batch's cost: wall time, and CPU seconds of the grader, the reference's answers and every sandbox."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = own.ru_utime + own.ru_stime + options.reference.cpu + sum(g.cpu for g in grades)
    return (f"graded {len(grades)} submission(s) in {format_seconds(wall)} with --jobs {jobs}: {cpu:.1f} CPU seconds "
            f"in all, {cpu / len(grades):.1f} per submission")


def grade_all(submissions: list[Submission], options: Options, jobs: int, failures: list[str]) -> Iterator[Grade]:
    """Grade the submissions, `jobs` at a time; yield the grades in the order of the submissions. A grader
    failure on one submission makes its row ("could not be graded") and adds its traceback to `failures`."""
    def task(submission: Submission) -> Grade:
        """Grade one student's submission."""
        try:
            return grade_file(submission, options)
        except Exception:  # noqa: BLE001 - one submission never stops the batch
            failures.append(f"{submission.student} ({submission.path}):\n{traceback.format_exc()}")
            return ungraded(options, submission.student, submission.path,
                            f"{UNGRADED}the grader failed on it (see the error log)")

    if jobs <= 1 or len(submissions) == 1:
        yield from map(task, submissions)
        return
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(task, submission) for submission in submissions]
    try:
        for future in futures:
            yield future.result()
    finally:  # Ctrl-C: the submissions not started yet are dropped; those being graded end first
        pool.shutdown(wait=True, cancel_futures=True)
