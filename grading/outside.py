"""Changes outside the blanks: code added, removed or changed there, and answers written just outside a marker.

The code outside the blanks (answers and marker lines left out, comments, blank lines and docstrings
ignored) is compared line by line with the reference's. Every change is flagged for review; an added
chunk right after an END BLANK line or right before a BEGIN BLANK line is "near" that blank, so that
an answer written just outside its markers can be graded as the answer.
"""
from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import dataclass

from course.assignment import BEGIN, END, Blank

SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
SHOWN = 3  # lines of code quoted per change


@dataclass
class Change:
    """One change outside the blanks: lines added (or changed) in the student's file, or removed from it."""
    kind: str  # "added", "removed" or "changed"
    line: int  # first line: in the student's file, or in the reference for "removed"
    code: list[str]  # the student's lines ("added", "changed") or the reference's ("removed")
    old: list[str]  # the reference's lines a "changed" replaces
    near: str | None = None  # the blank whose markers the added lines touch
    where: str = ""  # "just after END BLANK fc", "just before BEGIN BLANK layer2"

    def flag(self) -> str:
        """One line for the review list."""
        quoted = " / ".join(short(line) for line in self.code[:SHOWN]) + (" / ..." if len(self.code) > SHOWN else "")
        if self.kind == "removed":
            return f"code removed outside the blanks (reference line {self.line}): {quoted}"
        where = f" ({self.where})" if self.where else ""
        if self.kind == "changed":
            old = " / ".join(short(line) for line in self.old[:SHOWN])
            return f"line {self.line}{where}: code changed outside the blanks: {old} -> {quoted}"
        return f"line {self.line}{where}: code added outside the blanks: {quoted}"


def short(line: str, width: int = 90) -> str:
    """A line of code without its indentation, cut to `width` characters."""
    line = line.strip()
    return line if len(line) <= width else line[:width - 3] + "..."


def code_lines(text: str, blanks: dict[str, Blank]) -> list[tuple[int, str]]:
    """(line number, code tokens joined) of each code line outside the given blanks (1-based)."""
    lines = text.splitlines(keepends=True)
    for blank in blanks.values():
        lines[blank.begin:blank.end + 1] = ["\n"] * (blank.end + 1 - blank.begin)
    source = "".join(lines)
    rows: dict[int, list[tuple[int, str]]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type not in SKIP:
                rows.setdefault(token.start[0], []).append((token.type, token.string))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [(i, " ".join(code.split())) for i, line in enumerate(lines, 1)
                if (code := re.sub(r"#.*", "", line).strip())]
    return [(row, " ".join(s for _, s in tokens)) for row, tokens in sorted(rows.items())
            if not all(kind == tokenize.STRING for kind, _ in tokens)]  # a docstring alone is no code


def changes_outside(reference_text: str, reference: dict[str, Blank], text: str,
                    found: dict[str, Blank]) -> list[Change]:
    """Every change outside the blanks of a student's file, compared with the reference's code there."""
    mine, theirs = code_lines(text, found), code_lines(reference_text, reference)
    ref_lines, my_lines = reference_text.splitlines(), text.splitlines()
    matcher = difflib.SequenceMatcher(None, [c for _, c in theirs], [c for _, c in mine], autojunk=False)
    changes = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        old = [ref_lines[row - 1] for row, _ in theirs[i1:i2]]
        if op == "delete":
            changes.append(Change("removed", theirs[i1][0], old, []))
            continue
        first, last = mine[j1][0], mine[j2 - 1][0]
        change = Change("added" if op == "insert" else "changed", first, my_lines[first - 1:last], old)
        change.near, change.where = near_marker(my_lines, first, last)
        changes.append(change)
    return changes


def near_marker(lines: list[str], first: int, last: int) -> tuple[str | None, str]:
    """The blank whose END line comes just before lines first..last, or whose BEGIN line just after."""
    for row in range(first - 1, 0, -1):  # look back, past blank and comment lines
        if end := END.match(lines[row - 1]):
            return end["id"], f"just after END BLANK {end['id']}"
        if not skippable(lines[row - 1]):
            break
    for row in range(last + 1, len(lines) + 1):
        if begin := BEGIN.match(lines[row - 1]):
            return begin["id"], f"just before BEGIN BLANK {begin['id']}"
        if not skippable(lines[row - 1]):
            break
    return None, ""


def skippable(line: str) -> bool:
    """A blank line or a comment that is no marker."""
    stripped = line.strip()
    return not stripped or (stripped.startswith("#") and not BEGIN.match(line) and not END.match(line))


def answers_outside(changes: list[Change]) -> dict[str, list[str]]:
    """Lines added just outside a blank's markers, by blank: candidates for an answer written out of place."""
    found: dict[str, list[str]] = {}
    for change in changes:
        if change.kind == "added" and change.near:
            found.setdefault(change.near, []).extend(line + "\n" for line in change.code)
    return found
