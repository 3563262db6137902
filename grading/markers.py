"""What only the grader does with the blanks: check the reference's markers, fill blanks, make the skeleton, and
read sources and submissions. Finding the blanks is course/assignment.py's (check.py's too)."""
from __future__ import annotations

import ast
import os
import re
import stat
import textwrap
from pathlib import Path

from course.assignment import Blank, decode_source, find_blanks, untouched
from course.cli import UserError

CODING = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
MAX_SUBMISSION = 2**20  # bytes: a resnet.py is about 6 kB


def read_source(path: Path) -> str:
    """A Python file's text, decoded as Python decodes it (a byte-order mark, a `coding:` line)."""
    with open(path, "rb") as f:
        return decode_source(f.read(), str(path))


def read_submission(path: Path) -> str:
    """A submitted file's text: a regular file, never through a link, at most MAX_SUBMISSION bytes (UserError)."""
    return decode_source(submission_bytes(path), path.name)


def submission_bytes(path: Path) -> bytes:
    """A submitted file's bytes: a regular file, never through a link, at most MAX_SUBMISSION bytes (UserError)."""
    kind = not_regular(path)
    if kind:
        raise UserError(f"{path.name} is {kind}, not a regular file: it was not read")
    try:  # O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a pipe since is refused, never waited on
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise UserError(f"{path.name} could not be opened: {error.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path.name} is not a regular file: it was not read")
        data = f.read(MAX_SUBMISSION + 1)
    if len(data) > MAX_SUBMISSION:
        raise UserError(f"{path.name} is larger than {MAX_SUBMISSION // 2**10} kB: it was not read")
    return data


def not_regular(path: Path) -> str | None:
    """None for a regular file; else what it is ('a symbolic link', 'a named pipe', ...), never following a link."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        return f"unreadable ({error.strerror})"
    kinds = {stat.S_ISLNK: "a symbolic link", stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a device", stat.S_ISBLK: "a device", stat.S_ISDIR: "a folder"}
    return next((name for test, name in kinds.items() if test(mode)), None)


def as_utf8(text: str) -> str:
    """The text with a `coding:` line (line 1 or 2) naming UTF-8, for files written out as UTF-8."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines[:2]):
        if match := CODING.match(line):
            lines[i] = line[:match.start(1)] + "utf-8" + line[match.end(1):]
            return "".join(lines)
        if line.strip() and not line.lstrip().startswith("#"):
            break
    return text


def reference_blanks(text: str, name: str = "resnet.py") -> dict[str, Blank]:
    """The blanks of the reference, with points and hints; any broken marker is an error."""
    blanks, problems = find_blanks(text)
    if problems:
        raise UserError(f"{name}: " + "; ".join(problems.values()))
    for blank in blanks.values():
        if blank.points is None or blank.hint is None:
            raise UserError(f"{name} line {blank.begin + 1}: a BEGIN line must read "
                            f'# BEGIN BLANK <id> points=<n> hint="<hint>"')
    if not blanks:
        raise UserError(f"{name} has no BEGIN BLANK / END BLANK markers")
    return blanks


def fill_blanks(text: str, answers: dict[str, list[str]]) -> str:
    """The text with the answer lines of the given blanks replaced (marker lines kept)."""
    lines = text.splitlines(keepends=True)
    blanks, _ = find_blanks(text)
    for blank in sorted(blanks.values(), key=lambda b: b.begin, reverse=True):
        if blank.id in answers:
            lines[blank.begin + 1:blank.end] = answers[blank.id]
    return "".join(lines)


def indent_of(line: str) -> str:
    """The leading spaces and tabs of a line."""
    return line[:len(line) - len(line.lstrip())]


def placeholder(blank: Blank, begin_line: str) -> list[str]:
    """The skeleton's lines for a blank: the hint, and `x = None` where the answer is an assignment."""
    indent = indent_of(begin_line)
    newline = "\r\n" if begin_line.endswith("\r\n") else "\n"
    todo = f"fill in here ({blank.points} points)"
    lines = [f"{indent}# hint: {blank.hint}{newline}"]
    target = assignment_target(blank.lines)
    lines.append(f"{indent}{target} = None  # {todo}{newline}" if target else f"{indent}# {todo}{newline}")
    return lines


def assignment_target(lines: list[str]) -> str | None:
    """`self.fc` for an answer `self.fc = nn.Linear(...)`, None for any other answer."""
    try:
        body = ast.parse(textwrap.dedent("".join(lines))).body
    except SyntaxError:
        return None
    if len(body) == 1 and isinstance(body[0], ast.Assign) and len(body[0].targets) == 1:
        return ast.unparse(body[0].targets[0])
    return None


def placeholders(text: str, blanks: dict[str, Blank]) -> dict[str, list[str]]:
    """The skeleton's lines of every reference blank."""
    lines = text.splitlines(keepends=True)
    return {b.id: placeholder(b, lines[b.begin]) for b in blanks.values()}


def make_skeleton(text: str) -> str:
    """The student version of the reference: every answer replaced by its placeholder."""
    blanks = reference_blanks(text)
    answers = placeholders(text, blanks)
    skeleton = fill_blanks(text, answers)
    compile(skeleton, "skeleton", "exec")  # the placeholders must leave valid Python
    if not all(map(untouched, answers.values())):  # check.py and the grader must both see them as not done
        raise UserError("the skeleton's placeholders do not read as untouched blanks (course/assignment.py)")
    return skeleton
