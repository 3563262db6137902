"""Reports of grades: the full text report, the batch listing, the CSV and Gradescope's results.json.

Every note of every blank that lost points, and every review flag, shows in the listing and the CSV,
not only in the full report. The students' Gradescope results show, before grades are published,
only each blank's points and hint (and, for a file that could not be graded, the kind of problem);
the verdicts, notes and messages (which may quote the reference, or what the submission printed) come
with visibility "after_published", the review flags are for the staff only ("hidden").
"""
from __future__ import annotations

import csv
import io
import textwrap

from course.cli import UserError
from grading.judge import Grade
from grading.sandbox import UNGRADED


def outcome_lines(tests: dict[str, tuple[bool, str]]) -> list[str]:
    """`all 3 passed`, or one line per test when some failed."""
    if not tests:
        return ["not run"]
    if all(passed for passed, _ in tests.values()):
        return [f"{f'all {len(tests)} ' if len(tests) > 1 else ''}passed: {', '.join(tests)}"]
    return [f"{'pass' if passed else 'FAIL'} {name}" + (f": {message}" if message else "")
            for name, (passed, message) in tests.items()]


def labelled(label: str, lines: list[str]) -> list[str]:
    """Lines indented under a label in the first column: `  label      line`."""
    return [f"  {label if i == 0 else '':<10} {line}" for i, line in enumerate(lines)]


def report(grade: Grade) -> str:
    """The full text report of one submission: every blank, its tests, the review flags, the points table."""
    out = [f"Submission: {grade.student} ({grade.path})"]
    if grade.problem:
        out.append(f"PROBLEM: {grade.problem}" + ("; every blank scores 0" if grade.total == 0 else ""))
    for b in grade.blanks:
        out += ["", f"[{b.id}] {b.verdict}: {b.points}/{b.max_points} points"]
        mine = textwrap.dedent("".join(b.answer or [])).splitlines()
        theirs = textwrap.dedent("".join(b.reference)).splitlines()
        if b.verdict == "same":
            out += labelled("answer", mine)
        else:
            out += labelled("hint", [b.hint])
            out += labelled("yours", mine or ["(nothing)"]) + labelled("reference", theirs)
        out += labelled("note", b.notes)
        out += labelled("tests", outcome_lines(b.tests))
    if grade.other_tests:
        failed = [f"FAIL {name}: {message}" for name, (passed, message) in grade.other_tests.items() if not passed]
        out += ["", f"Other tests (no points): {len(grade.other_tests) - len(failed)}/{len(grade.other_tests)} passed"]
        out += ["  " + line for line in failed]
    if grade.review:
        out += ["", "Review by hand:"] + [f"  - {flag}" for flag in grade.review]
    out += ["", f"{'blank':<18}{'verdict':<12}{'tests':<9}{'points':>7}"]
    for b in grade.blanks:
        tests = f"{sum(passed for passed, _ in b.tests.values())}/{len(b.tests)}" if b.tests else "-"
        out.append(f"{b.id:<18}{b.verdict:<12}{tests:<9}{f'{b.points}/{b.max_points}':>7}")
    out.append(f"Total: {grade.total}/{grade.max_total}")
    return "\n".join(out) + "\n"


def lost(grade: Grade) -> list[str]:
    """One entry per blank that lost points, with all its notes: `fc: different (note; note)`."""
    if grade.problem:
        return []
    return [f"{b.id}: {b.verdict}" + (f" ({'; '.join(b.notes)})" if b.notes else "")
            for b in grade.blanks if b.points < b.max_points]


def summary(grade: Grade) -> str:
    """What cost points, on one line: the problem, then every blank that lost points with all its notes."""
    return "; ".join(([grade.problem] if grade.problem else []) + lost(grade))


def listing(grades: list[Grade]) -> list[str]:
    """The batch listing: a line per student (names of any length aligned), then what cost points and the flags."""
    width = max(len(g.student) for g in grades)
    lines = []
    for grade in grades:
        flag = "  REVIEW" if grade.review else ""
        lines.append(f"{grade.student:<{width}}  {grade.total:>3}/{grade.max_total}{flag}")
        lines += [f"    {entry}" for entry in ([grade.problem] if grade.problem else []) + lost(grade)]
        lines += [f"    review: {flag}" for flag in grade.review]
    return lines


NOT_GRADED_YET = "not graded yet: the batch was interrupted"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a cell starting so is a formula to a spreadsheet


def csv_header(blank_ids: list[str]) -> list[str]:
    """The CSV's first row."""
    return ["student", *blank_ids, "total", "review", "notes"]


def csv_text(grades: list[Grade], blank_ids: list[str], kept: dict[str, list[str]] | None = None,
             pending: list[str] = ()) -> str:
    """The CSV: student, points per blank, total, review flags, notes; text cells safe to open in a spreadsheet.
    `kept`: rows of an earlier run, as they were written; `pending`: students not graded yet (an interrupted
    batch), each a row with NOT_GRADED_YET and no points. Rows in the order of the students' names."""
    rows = dict(kept or {})
    for grade in grades:
        rows[grade.student] = [spreadsheet_safe(grade.student), *[b.points for b in grade.blanks], grade.total,
                               spreadsheet_safe(" | ".join(grade.review)), spreadsheet_safe(summary(grade))]
    for student in pending:
        rows[student] = [spreadsheet_safe(student), *[""] * len(blank_ids), "", NOT_GRADED_YET,
                         "run the same command again with --resume to grade it"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(csv_header(blank_ids))
    writer.writerows(rows[student] for student in sorted(rows))
    return buffer.getvalue()


def finished_rows(text: str, blank_ids: list[str]) -> dict[str, list[str]]:
    """The rows of an earlier CSV that hold a grade (not NOT_GRADED_YET), by student; a UserError if it is not
    this grader's CSV for these blanks."""
    table = list(csv.reader(io.StringIO(text)))
    if not table or table[0] != csv_header(blank_ids):
        raise UserError("--resume: the --csv file is not a grades CSV of this assignment (its first row differs)")
    return {row[0][1:] if row[0].startswith("'") and row[0][1:].startswith(FORMULA_STARTS) else row[0]: row
            for row in table[1:] if len(row) == len(table[0]) and row[-2] != NOT_GRADED_YET}


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as text: a cell that starts like a formula gets a leading apostrophe (OWASP's
    advice against CSV injection), which spreadsheets hide."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def details(b) -> str:
    """A blank's verdict, notes and test results, one per line."""
    lines = [f"verdict: {b.verdict}", *[f"note: {n}" for n in b.notes]]
    return "\n".join(lines + [f"tests: {line}" for line in outcome_lines(b.tests)])


def gradescope(grade: Grade) -> dict:
    """The staff's results object of one submission (Gradescope's format): every detail, visible."""
    tests = [{"name": b.id, "score": b.points, "max_score": b.max_points, "output": details(b)} for b in grade.blanks]
    output = "\n".join(([grade.problem] if grade.problem else []) + [f"review: {f}" for f in grade.review])
    return {"score": grade.total, "output": output, "tests": tests}


def student_results(grade: Grade) -> dict:
    """The students' results.json: points and hints visible, details after publication, review flags hidden."""
    tests = []
    for b in grade.blanks:
        status = "passed" if b.points == b.max_points else f"not yet right. Hint: {b.hint}"
        tests.append({"name": b.id, "score": b.points, "max_score": b.max_points, "output": status,
                      "visibility": "visible"})
        tests.append({"name": f"{b.id}: details", "score": 0, "max_score": 0, "output": details(b),
                      "visibility": "after_published"})
    if grade.review:
        tests.append({"name": "review by staff", "score": 0, "max_score": 0, "visibility": "hidden",
                      "output": "\n".join(grade.review)})
    output = ""
    if grade.problem:  # its message may quote what the submission printed or raised: shown after publication
        kind = grade.problem.removeprefix(UNGRADED).split(":")[0].split(" (")[0]
        output = f"Your file could not be graded: {kind}."
        tests.append({"name": "why it could not be graded", "score": 0, "max_score": 0,
                      "visibility": "after_published", "output": grade.problem})
    return {"score": grade.total, "output": output, "stdout_visibility": "hidden", "tests": tests}
