"""What a TA looks at beside the grades of a cohort: pairs of submissions too alike, and the cohort's summary.

Similarity rule: each blank's answer is reduced to its syntax tree with every name replaced by its order of first
appearance in that blank (`x`, `out`, `h` -> n0, n1, n2; attributes such as `.Conv2d` kept), so names,
comments, blank lines and formatting do not count. Submissions are flagged together when every blank reduces to
the same tree, AT LEAST TWO of those blanks differ from the reference's answer (and are not left untouched), and
the group is small: at most 5 % of the cohort (at least 2). Right answers look alike for everyone, and one common
mistake made by many is a common mistake; the same two unusual answers in a few files are worth a look. A blank
Python cannot parse on its own is compared as its text without comments and spaces.

The summary: each blank's share of students with full marks, the score's histogram in tenths of the maximum;
printed after the listing, and drawn as a PNG beside the CSV.
"""
from __future__ import annotations

import ast
import re
import textwrap
from collections import defaultdict
from pathlib import Path

from course.assignment import untouched
from course.cli import atomic_file
from grading.judge import Grade


class Renamer(ast.NodeTransformer):
    """Every name (variables, arguments, functions) becomes n0, n1, ... in the order it first appears."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def rename(self, name: str) -> str:
        return self.names.setdefault(name, f"n{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.rename(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.rename(node.arg)
        return node


def shape_of(lines: list[str]) -> str:
    """One blank's answer without names, comments or formatting (see the module's rule)."""
    text = textwrap.dedent("".join(lines)).strip()
    try:
        return ast.dump(Renamer().visit(ast.parse(text)), annotate_fields=False)
    except SyntaxError:
        return re.sub(r"\s+", "", re.sub(r"#.*", "", text))


def similar_groups(grades: list[Grade]) -> list[list[str]]:
    """Groups of students whose blanks are alike by the module's rule."""
    groups = defaultdict(list)
    reference = {b.id: shape_of(b.reference) for b in grades[0].blanks} if grades else {}  # the same for all
    for grade in grades:
        if grade.problem or any(b.answer is None for b in grade.blanks):
            continue
        shapes = tuple(shape_of(b.answer) for b in grade.blanks)
        unusual = [b for b, shape in zip(grade.blanks, shapes, strict=True) if not untouched(b.answer)
                   and shape != reference[b.id]]
        if len(unusual) >= 2:
            groups[shapes].append(grade.student)
    largest = max(2, len(grades) // 20)
    return [students for students in groups.values() if 2 <= len(students) <= largest]


def flag_similar(grades: list[Grade]) -> int:
    """Add a review flag to each student of a similar group, naming the others; the number of students flagged."""
    by_student = {grade.student: grade for grade in grades}
    flagged = 0
    for students in similar_groups(grades):
        for student in students:
            others = [other for other in students if other != student]
            more = f" and {len(others) - 5} more" if len(others) > 5 else ""
            by_student[student].review.append(
                f"similar to {', '.join(others[:5])}{more}: the same blanks up to names, comments and formatting, "
                "two or more of them unlike the reference's (the rule: docs/grading.md)")
            flagged += 1
    return flagged


def summary_lines(grades: list[Grade]) -> list[str]:
    """Each blank's share of full marks, and a text histogram of the totals in tenths of the maximum."""
    graded = [g for g in grades if g.blanks]
    if not graded:
        return []
    lines = [f"Cohort summary ({len(graded)} submissions): full marks per blank"]
    lines += [f"  {blank:<17} {100 * full / len(graded):5.1f} %  ({full}/{len(graded)})"
              for blank, full in full_marks(graded).items()]
    counts = histogram(graded)
    lines.append(f"Scores, in tenths of the {graded[0].max_total} points:")
    scale = max(1, -(-max(counts.values()) // 50))  # bars of at most 50 characters
    lines += [f"  {tenth:>9} {'#' * -(-count // scale)} {count}" for tenth, count in counts.items()]
    return lines


def full_marks(graded: list[Grade]) -> dict[str, int]:
    """Each blank -> how many submissions earned its full points."""
    return {b.id: sum(g.blanks[i].points == g.blanks[i].max_points for g in graded)
            for i, b in enumerate(graded[0].blanks)}


def histogram(graded: list[Grade]) -> dict[str, int]:
    """'0-10 %', ..., '90-100 %' of the maximum -> submissions whose total falls in that tenth (the top one
    includes full marks)."""
    counts = [0] * 10
    for grade in graded:
        counts[min(9, int(10 * grade.total / grade.max_total)) if grade.max_total else 0] += 1
    return {f"{10 * i}-{10 * (i + 1)} %": count for i, count in enumerate(counts)}


def write_summary_png(grades: list[Grade], path: Path) -> Path | None:
    """The summary as a PNG: full marks per blank, and the histogram of the totals. None without matplotlib."""
    graded = [g for g in grades if g.blanks]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    full = full_marks(graded)
    left.barh(list(full)[::-1], [100 * count / len(graded) for count in full.values()][::-1])
    left.set(xlim=(0, 100), xlabel="% of submissions with full marks", title="Each blank")
    counts = histogram(graded)
    right.bar(list(counts), list(counts.values()))
    right.set(xlabel=f"total, in tenths of the {graded[0].max_total} points", ylabel="submissions", title="Scores")
    right.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    with atomic_file(path) as f:
        figure.savefig(f, format="png", dpi=100)
    plt.close(figure)
    return path
