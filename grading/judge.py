"""Grade one submission: the text verdicts, the changes outside the blanks, the builds and the tests.

A blank earns its full points when its answer is accepted, by its text (same or equivalent, see
compare.py) or by what it builds (spliced into the reference's code, see splice.py: the same module
as the reference's), unless code outside the blanks changes what the blank builds (then it is charged
to that blank). An answer written just outside its markers, with the blank left as given, earns its
points too, and so does an answer that builds the reference's module only with a helper the student
defined outside the blanks (both are flagged). Every change outside the blanks is flagged for review.
A file that does not import (or times out, or crashes, or runs out of CPU time or memory) earns 0.
The per-layer tests run once, on the file as submitted (where a wrong fc fails the shape tests of
every layer too); their results are reported but do not decide the points.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from course.assignment import BLOCKS, PROBES, find_blanks
from course.cli import UserError
from grading.builds import build_note, own_part, same_build, same_shapes
from grading.compare import ACCEPTED, Reference, compare
from grading.intake import Submission
from grading.outside import Change, answers_outside, changes_outside
from grading.reference import ReferenceAnswers
from grading.sandbox import UNGRADED, Limits, run
from grading.splice import answers_file, splice, submitted_file

# The tests of tests/test_resnet.py that cover each blank (test names start with these).
BLANK_TESTS = {
    "block_downsample": ("test_block_downsamples[", "test_block_parameter_counts"),
    "block_same": ("test_block_keeps_size[", "test_block_parameter_counts"),
    "stem_conv": ("test_layer_shape[layer1-",),
    "stem_pool": ("test_layer_shape[layer1-",),
    "layer2": ("test_layer_shape[layer2-",),
    "layer3": ("test_layer_shape[layer3-",),
    "layer4": ("test_layer_shape[layer4-",),
    "avgpool": ("test_layer_shape[avgpool-",),
    "fc": ("test_fc_shape", "test_parameter_count["),
}
BUILD_NOTE = "builds the same module as the reference (same layers; same outputs with the reference's weights)"
HELPER_NOTE = ("builds the reference's module only with the student's code outside the blanks (a helper): "
               "look by hand")
REVIEW_PREFIXES = ("the answer is just outside", HELPER_NOTE)  # notes on points earned that need a look by hand
SHAPES_NOTE = "its shapes are right (its tests pass), but what it builds differs from the assignment's design"


@dataclass
class BlankGrade:
    """The grade of one blank."""
    id: str
    max_points: int
    hint: str
    reference: list[str]
    answer: list[str] | None
    verdict: str
    notes: list[str]
    tests: dict[str, tuple[bool, str]] = field(default_factory=dict)
    points: int = 0


@dataclass
class Grade:
    """The grade of one submission."""
    student: str
    path: Path
    blanks: list[BlankGrade]
    problem: str | None = None
    review: list[str] = field(default_factory=list)
    other_tests: dict[str, tuple[bool, str]] = field(default_factory=dict)
    cpu: float = 0.0

    @property
    def total(self) -> int:
        """Points earned."""
        return sum(b.points for b in self.blanks)

    @property
    def max_total(self) -> int:
        """Points there are."""
        return sum(b.max_points for b in self.blanks)


@dataclass
class Options:
    """How to grade: the reference and its answers to the probes, the limits, the sandbox, the seed."""
    ref: Reference
    reference: ReferenceAnswers
    limits: Limits
    use_bwrap: bool
    seed: int | None = None  # None: a new random seed for each submission
    _checked: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ready(self) -> None:
        """Check once, before a submission runs, that the reference builds every blank."""
        with self._lock:
            if not self._checked:
                self.reference.check()
                self._checked = True

    def draw_seed(self) -> int:
        """The seed of one submission's probes: --seed, or drawn at random (so that no answer can be made ahead)."""
        return self.seed if self.seed is not None else secrets.randbelow(2**31)


def covering(tests: dict[str, tuple[bool, str]], blank_id: str) -> dict[str, tuple[bool, str]]:
    """The tests that cover a blank."""
    return {name: r for name, r in tests.items() if name.startswith(BLANK_TESTS.get(blank_id, ("-",)))}


def text_verdicts(ref: Reference, text: str) -> tuple[list[BlankGrade], dict[str, str], dict]:
    """Each blank's text verdict, the broken markers (blank -> problem) and the blanks found."""
    found, broken = find_blanks(text)
    blanks = []
    for b in ref.blanks.values():
        if b.id in found:
            verdict, notes = compare(ref, b.id, found[b.id].lines)
        else:
            verdict, notes = "missing", [broken.get(b.id, f"the marker lines BEGIN BLANK {b.id} / END BLANK {b.id} "
                                                          "were not found")]
        answer = found[b.id].lines if b.id in found else None
        blanks.append(BlankGrade(b.id, b.points, b.hint, b.lines, answer, verdict, notes))
    return blanks, {k: v for k, v in broken.items() if k in ref.blanks}, found


def plan(ref: Reference, text: str, blanks: list[BlankGrade], outside: bool) -> tuple[dict[str, str], list[dict]]:
    """The files and jobs for the sandbox: the file as submitted first (its import decides), then the builds."""
    every = {b: PROBES[b] for b in ref.blanks}
    files = {"submitted.py": submitted_file(text)}
    jobs = [{"name": "submitted", "file": "submitted.py", "tests": True, "stop_on_problem": True,
             "probes": every if outside else {}}]
    if outside:
        files["answers.py"] = answers_file(ref, {b.id: b.answer for b in blanks if b.answer is not None})
        jobs.append({"name": "answers", "file": "answers.py", "probes": every})
    splices, splice_jobs = splice_plan(ref, blanks)
    return files | splices, jobs + splice_jobs


def splice_plan(ref: Reference, blanks: list[BlankGrade]) -> tuple[dict[str, str], list[dict]]:
    """The files and jobs that build each `different` answer alone, spliced into the reference's code."""
    files, jobs = {}, []
    for b in blanks:
        if b.verdict == "different":
            files[f"splice_{b.id}.py"] = splice(ref, b.id, b.answer)
            jobs.append({"name": f"splice_{b.id}", "file": f"splice_{b.id}.py", "probes": {b.id: PROBES[b.id]}})
    return files, jobs


def grade_file(submission: Submission, options: Options) -> Grade:
    """Grade one submission (grading/intake.py found it): its text here, then its builds and tests in the sandbox."""
    ref, student, path = options.ref, submission.student, submission.path
    try:
        if submission.problem:
            raise UserError(submission.problem)
        text = submission.read()
    except UserError as error:
        grade = ungraded(options, student, path, f"{UNGRADED}{error}")
        grade.review += submission.review
        return grade
    blanks, broken, found = text_verdicts(ref, text)
    changes = changes_outside(ref.text, ref.blanks, text, found)
    grade = Grade(student, path, blanks, review=[*submission.review, *[c.flag() for c in changes]])
    grade.review += [f"{blank_id}: markers deleted or changed ({problem})" for blank_id, problem in broken.items()]
    try:
        compile(text, str(path), "exec")
    except (SyntaxError, ValueError) as error:
        grade_blanks_alone(grade, f"{type(error).__name__} line {getattr(error, 'lineno', None) or '?'}: "
                                  f"{getattr(error, 'msg', error)}", options)
        return grade
    if changes and broken:
        grade.review.append("what code outside the blanks builds was not checked: the markers are broken")
    run_and_settle(grade, text, changes if not broken else [], broken, options)
    return grade


def ungraded(options: Options, student: str, path: Path, problem: str) -> Grade:
    """The grade of a submission that could not be graded: 0 points, and a review flag."""
    blanks = [BlankGrade(b.id, b.points, b.hint, b.lines, None, "missing", []) for b in options.ref.blanks.values()]
    return Grade(student, path, blanks, problem=problem, review=[f"{problem}: look at it by hand"])


def run_and_settle(grade: Grade, text: str, changes: list[Change], broken: dict[str, str], options: Options) -> None:
    """Run the submission's jobs in the sandbox, then settle each blank from what came back."""
    files, jobs = plan(options.ref, text, grade.blanks, bool(changes))
    done, seed, stopped = run_jobs(grade, files, jobs, options)
    submitted = done.get("submitted", {})
    if submitted.get("problem") and not stopped:  # the file's own code failed at import
        grade_blanks_alone(grade, submitted["problem"][:300], options)
        return
    grade.problem = stopped
    if grade.problem:
        if grade.problem.startswith(UNGRADED):
            grade.review.append(f"{grade.problem}: look at it by hand")
        return
    wanted = [("splice", b.id) for b in grade.blanks if b.verdict == "different"]
    wanted += [("full", b) for b in options.ref.blanks] if changes else []
    answers = options.reference.answers(seed, wanted)
    tests = test_results(submitted)
    charged: set[str] = set()
    for b in sorted(grade.blanks, key=lambda b: b.id not in BLOCKS):  # blocks first: a change inside a block
        b.tests = covering(tests, b.id)
        settle(b, done, answers, options.ref, changes, broken, charged)  # is charged to the block only
    covered = {name for b in grade.blanks for name in covering(tests, b.id)}
    grade.other_tests = {name: r for name, r in tests.items() if name not in covered}
    grade.review += [f"{b.id}: {note}" for b in grade.blanks for note in b.notes if note.startswith(REVIEW_PREFIXES)]
    if any("MemoryError" in m or "allocate memory" in m for _, m in tests.values()):
        grade.problem = f"exceeded the memory limit ({options.limits.memory_gb:g} GB) during the tests"


def run_jobs(grade: Grade, files: dict[str, str], jobs: list[dict], options: Options) -> tuple[dict, int, str | None]:
    """Run a submission's jobs in the sandbox: each job's result, the seed of its probes, and the problem that
    stops its grading (the sandbox's, or a job's answers it forged), if any."""
    options.ready()
    seed = options.draw_seed()
    result = run(files, jobs, options.limits, options.use_bwrap, seed)
    grade.cpu += result.cpu
    done = result.report.get("jobs", {})
    forged = next((job["problem"] for job in done.values() if job.get("problem", "").startswith(UNGRADED)), None)
    return done, seed, result.problem or forged


def grade_blanks_alone(grade: Grade, why: str, options: Options) -> None:
    """The whole file did not import: judge each blank alone, in the reference's code, as a TA grades the blanks.
    An answer accepted by its text keeps its points; a `different` one is judged by what it builds alone."""
    grade.review.append(f"the whole file did not import: {why.removeprefix('did not import: ')}; each blank was "
                        "graded alone in the reference's code, the rest of the file was not run")
    files, jobs = splice_plan(options.ref, grade.blanks)
    done, answers = {}, {}
    if jobs:
        done, seed, grade.problem = run_jobs(grade, files, jobs, options)
        if grade.problem:
            grade.review.append(f"{grade.problem}: look at it by hand")
            return
        answers = options.reference.answers(seed, [("splice", b.id) for b in grade.blanks if b.verdict == "different"])
    for b in grade.blanks:
        settle(b, done, answers, options.ref, [], {}, set())


def probes_of(jobs: dict, job: str, blank_id: str) -> list[dict] | None:
    """The fingerprints a job reported for a blank (the sandbox checked their form), None if none."""
    return jobs.get(job, {}).get("probes", {}).get(blank_id)


def test_results(job: dict) -> dict[str, tuple[bool, str]]:
    """The per-layer test results a job reported (the sandbox checked their form): name -> (passed, message)."""
    return {name: (r[0], r[1][:200]) for name, r in job.get("tests", {}).items()}


def settle(b: BlankGrade, jobs: dict, answers: dict[tuple[str, str], list[dict]], ref: Reference,
           changes: list[Change], broken: dict[str, str], charged: set[str]) -> None:
    """A blank's final verdict, notes and points, from its text verdict, its builds and the changes outside."""
    ref_splice, ref_full = answers.get(("splice", b.id)), answers.get(("full", b.id))
    spliced = probes_of(jobs, f"splice_{b.id}", b.id)
    mine, alone = probes_of(jobs, "submitted", b.id), probes_of(jobs, "answers", b.id)
    if b.verdict == "different":
        judge_build(b, jobs, spliced, ref_splice)
    accepted = b.verdict in ACCEPTED
    blocks_charged = bool(charged & set(BLOCKS))
    if b.verdict == "missing" and b.id not in broken and changes:
        accepted = outside_answer(b, changes, ref, mine, ref_full)
    elif b.verdict == "different" and needs_outside(spliced) and same_build(mine, ref_full):
        b.verdict, accepted = "equivalent", True
        b.notes.insert(0, HELPER_NOTE)
    elif accepted and changed_by_outside(b.id, mine, alone, ref_full, blocks_charged):
        note = build_note(own_part(mine, b.id, blocks_charged), own_part(alone, b.id, blocks_charged))
        b.notes.append(f"code outside the blanks changes what this blank builds: {note}")
        accepted = False
        charged.add(b.id)
    b.points = b.max_points if accepted else 0
    if b.verdict == "different" and same_shapes(spliced, ref_splice):
        b.notes.append(SHAPES_NOTE)


def changed_by_outside(blank_id: str, mine: list[dict] | None, alone: list[dict] | None,
                       ref_full: list[dict] | None, blocks_charged: bool) -> bool:
    """Whether the whole file builds the blank's own part otherwise than the student's answers alone do, and
    otherwise than the reference does (the answers alone may not build at all without a helper outside)."""
    if mine is None or alone is None:
        return False
    own = own_part(mine, blank_id, blocks_charged)
    return (not same_build(own, own_part(alone, blank_id, blocks_charged))
            and not same_build(own, own_part(ref_full, blank_id, blocks_charged)))


def judge_build(b: BlankGrade, jobs: dict, spliced: list[dict] | None, ref_splice: list[dict] | None) -> None:
    """Judge a `different` answer by what it builds alone: the reference's module makes it `equivalent`."""
    job = jobs.get(f"splice_{b.id}", {})
    if job.get("problem"):
        b.notes.append(f"building it failed: {job['problem'][:200]}")
    if spliced is None:
        return
    if same_build(spliced, ref_splice):
        b.verdict, b.notes = "equivalent", [BUILD_NOTE] + [f"in form: {note}" for note in b.notes[:2]]
    elif note := build_note(spliced, ref_splice):
        b.notes.append(f"what it builds differs: {note}")


def needs_outside(spliced: list[dict] | None) -> bool:
    """Whether an answer failed to build alone for want of a name: a helper defined outside the blanks."""
    return bool(spliced) and all(p.get("kind") in ("NameError", "AttributeError") for p in spliced)


def outside_answer(b: BlankGrade, changes: list[Change], ref: Reference, mine: list[dict] | None,
                   ref_full: list[dict] | None) -> bool:
    """Accept an answer written just outside the markers of a blank left as given (its verdict and notes say so)."""
    lines = answers_outside(changes).get(b.id)
    if not lines:
        return False
    verdict, _ = compare(ref, b.id, lines)
    builds_right = same_build(mine, ref_full)
    builds_something = mine is not None and all("error" not in probe for probe in mine)
    if not builds_right and not (verdict in ACCEPTED and builds_something):
        return False
    where = next(c.where for c in changes if c.near == b.id and c.kind == "added")
    b.verdict, b.answer = verdict if verdict in ACCEPTED else "equivalent", lines
    b.notes = [f"the answer is just outside the markers ({where}); the blank was left as given"]
    return True
