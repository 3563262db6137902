"""Grade many submissions, --jobs at a time, against one build of the reference.

The reference's modules are built once per batch, outside the sandbox (no student code runs there),
from the same spliced files a student's answers are built from; only their fingerprints are kept.
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import UserError, format_seconds
from grading.compare import Reference
from grading.judge import Grade, Options, grade_file
from grading.sandbox import Limits, run
from grading.splice import splice


def reference_builds(ref: Reference, limits: Limits) -> dict[str, dict[str, list[dict]]]:
    """What the reference builds for each blank: spliced as a student's answer is, and in the whole file."""
    files = {f"ref_splice_{b}.py": splice(ref, b, ref.blanks[b].lines) for b in ref.blanks}
    files["ref_full.py"] = ref.text
    jobs = [{"name": f"ref_splice_{b}", "file": f"ref_splice_{b}.py", "probes": [b]} for b in ref.blanks]
    jobs.append({"name": "ref_full", "file": "ref_full.py", "probes": list(ref.blanks)})
    outcome = run(files, jobs, Limits(timeout=max(limits.timeout, 300), cpu=max(limits.cpu, 120),
                                      memory_gb=limits.memory_gb), use_bwrap=False)
    done = outcome.report.get("jobs", {})
    problems = [outcome.problem] + [job.get("problem") for job in done.values()]
    if any(problems) or len(done) != len(jobs):
        raise UserError(f"building the reference's modules failed: {next((p for p in problems if p), 'no report')}")
    builds = {"splice": {b: done[f"ref_splice_{b}"]["probes"][b] for b in ref.blanks},
              "full": done["ref_full"]["probes"], "cpu": outcome.cpu}
    for blank_id in ref.blanks:
        for kind in ("splice", "full"):
            probes = builds[kind].get(blank_id)
            if not probes:
                raise UserError(f"blank {blank_id} has no probe: add what it builds to PROBES in "
                                "grading/fingerprint.py")
            if any("error" in p or "error" in p.get("output", {}) for p in probes):
                raise UserError(f"the reference's blank {blank_id} does not build: {probes}"[:500])
    return builds


def cost(grades: list[Grade], options: Options, wall: float, jobs: int) -> str:
    """The batch's cost: wall time, and CPU seconds of the grader, the reference build and every sandbox."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = own.ru_utime + own.ru_stime + options.builds.get("cpu", 0.0) + sum(g.cpu for g in grades)
    return (f"graded {len(grades)} submission(s) in {format_seconds(wall)} with --jobs {jobs}: {cpu:.1f} CPU seconds "
            f"in all, {cpu / len(grades):.1f} per submission")


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, file) for each STUDENT.py and each STUDENT/resnet.py in a folder."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        path = entry / "resnet.py" if entry.is_dir() else entry
        if entry.is_dir() and not path.is_file():
            print(f"warning: skipped {entry}: no resnet.py inside", file=sys.stderr)
        if path.is_file() and path.suffix == ".py":
            name = entry.stem if entry.is_file() else entry.name
            if name in found:
                raise UserError(f"{folder}: two submissions for student {name}: {found[name]} and {path}")
            found[name] = path
    if not found:
        raise UserError(f"{folder} holds no submission: expected one STUDENT.py per student, "
                        f"or one folder per student with a resnet.py inside")
    return list(found.items())


def grade_all(submissions: list[tuple[str, Path]], options: Options, jobs: int) -> Iterator[Grade]:
    """Grade the submissions, `jobs` at a time; yield the grades in the order of the submissions."""
    def task(item: tuple[str, Path]) -> Grade:
        """Grade one (student, file)."""
        return grade_file(item[1], item[0], options)

    if jobs <= 1 or len(submissions) == 1:
        yield from map(task, submissions)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(task, submissions)
