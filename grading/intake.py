"""What a TA downloads, turned into one row per student: every file seen belongs to exactly one row.

Read in a folder, or in a .zip (a learning-management system's bulk download), at any depth:
    STUDENT.py, STUDENT.ipynb (its code cells, in order), STUDENT.py.txt or STUDENT.txt (a text copy of Python)
    STUDENT/.../resnet.py, or another .py, .ipynb or .txt in STUDENT/ at any depth (the one with the markers)
    STUDENT.zip: a student's own archive, read as the folder STUDENT/
    Canvas      login_[LATE_]userid_submissionid_resnet[-N].py           (-N: the N-th resubmission)
    Moodle      Full Name_userid_assignsubmission_file_/resnet.py
    Blackboard  Assignment_username_attempt_YYYY-MM-DD-HH-MM-SS_resnet.py (its .txt receipt is not a row)
    Gradescope  [assignment_ID_export/]submission_ID/resnet.py, named by submission_metadata.yml when there
A student with several files is graded on the one that holds the blanks' markers, the latest attempt first
(attempt time, resubmission number, then the file's date); the others are listed in a review flag. A student
whose files hold nothing to grade still gets a row: 0 points and the reason. Archives are read in memory, never
extracted; no file over MAX_SUBMISSION is read.
"""
from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from course.assignment import decode_source
from course.cli import UserError
from grading.markers import MAX_SUBMISSION, not_regular, read_submission, submission_bytes

SOURCES = (".py", ".ipynb", ".txt")
SKIPPED = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db"}  # systems' own files
CANVAS = re.compile(r"^(?P<student>[^_\s]+)_(?:LATE_)?\d+_\d+_.+?(?:-(?P<attempt>\d+))?\.\w+$")
MOODLE = re.compile(r"^(?P<student>.+?)_\d+_assign(?:ment)?submission_\w+?_?$")
BLACKBOARD = re.compile(r"^.+?_(?P<student>[^_]+)_attempt_(?P<attempt>\d{4}(?:-\d\d){5})(?:_(?P<file>.+)|\.txt)$")
GRADESCOPE = re.compile(r"^submission_(?P<id>\d+)$")


@dataclass
class Submission:
    """One student's row: the file graded (or why none could be), its text when it is not a plain .py file,
    review flags on how it was found, and how many of the files seen are this row's."""
    student: str
    path: Path  # as the TA finds it; inside an archive: ARCHIVE.zip/member
    text: str | None = None  # the Python source, when it is not read from `path` itself
    problem: str | None = None  # why nothing could be graded: the row gets 0 and this reason
    review: list[str] = field(default_factory=list)
    files: int = 1

    def read(self) -> str:
        """The Python source to grade (a UserError when it cannot be read)."""
        return self.text if self.text is not None else read_submission(self.path)


@dataclass
class Found:
    """A file seen: its path inside the folder or archive, where the TA finds it, how to read it, size and date."""
    relative: PurePosixPath
    shown: Path
    load: Callable[[], bytes]
    size: int
    date: float
    plain: bool = False  # a regular file on disk, read from its path when graded
    refused: str = ""  # on disk but not a regular file: 'a symbolic link', 'a named pipe'...


@dataclass
class Intake:
    """What find_submissions saw: the rows, and the number of files seen (those that are not a row's are the
    systems' receipts and metadata)."""
    submissions: list[Submission]
    files_seen: int

    def summary(self) -> str:
        """'saw 42 files: 40 rows, one per student, 2 receipts or metadata files of the download'."""
        in_rows = sum(s.files for s in self.submissions)
        return (f"saw {self.files_seen} file(s): {len(self.submissions)} row(s), one per student, holding {in_rows}"
                + (f"; {self.files_seen - in_rows} receipt(s) or metadata of the download" if in_rows < self.files_seen
                   else ""))


def python_text(name: str, data: bytes) -> str:
    """The Python source in a .py, .txt or .ipynb file's bytes (a notebook: its code cells; magics commented out)."""
    if not name.endswith(".ipynb"):
        return decode_source(data, name)
    try:
        cells = json.loads(data.decode("utf-8"))["cells"]
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                   for c in cells if c.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{name}: not a Jupyter notebook that can be read ({type(error).__name__})") from None
    lines = "".join(src if src.endswith("\n") else src + "\n" for src in sources).splitlines()
    return "".join(f"# {line}\n" if line.lstrip().startswith(("%", "!")) else f"{line}\n" for line in lines)


def files_in_folder(folder: Path) -> list[Found]:
    """Every file under a folder; a link is listed (grading refuses it), never followed."""
    found = []
    for root, dirs, files in os.walk(folder):  # os.walk does not descend into linked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED
                         and not os.path.islink(os.path.join(root, d)))
        links = [d for d in os.listdir(root) if os.path.islink(os.path.join(root, d)) and d not in files]
        for name in sorted(files + links):
            path = Path(root) / name
            if name.startswith(".") or name in SKIPPED:
                continue
            mode = path.lstat()
            found.append(Found(PurePosixPath(path.relative_to(folder).as_posix()), path,
                               lambda path=path: submission_bytes(path), mode.st_size, mode.st_mtime,
                               plain=stat.S_ISREG(mode.st_mode), refused=not_regular(path) or ""))
    return found


def files_in_zip(archive: Path) -> list[Found]:
    """Every file member of a zip archive on disk, read once into memory (never extracted)."""
    data = archive_bytes(archive)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{archive.name}: not a zip archive that can be read ({error})") from None

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def load() -> bytes:
            if info.file_size > MAX_SUBMISSION:
                raise UserError(f"{PurePosixPath(info.filename).name} is larger than "
                                f"{MAX_SUBMISSION // 2**10} kB: it was not read")
            with zipfile.ZipFile(io.BytesIO(data)) as z, z.open(info) as f:
                return f.read(MAX_SUBMISSION)
        return load

    found = []
    for info in infos:
        relative = PurePosixPath(info.filename.replace("\\", "/").lstrip("/"))
        if ".." in relative.parts or any(p.startswith(".") or p in SKIPPED for p in relative.parts):
            continue
        date = datetime(*info.date_time).timestamp()  # the member's date, comparable with a file's mtime
        found.append(Found(relative, archive / relative, reader(info), info.file_size, date))
    return found


def archive_bytes(path: Path) -> bytes:
    """An archive's bytes (a regular file, never a pipe), up to 64 times MAX_SUBMISSION. The folder's links were
    refused before (Found.refused); the archive the TA names may be a link."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path.name} is not a regular file: it was not read")
    if info.st_size > 64 * MAX_SUBMISSION:
        raise UserError(f"{path.name} is larger than {64 * MAX_SUBMISSION // 2**20} MB: it was not read")
    return path.read_bytes()


def lms_layout(files: list[Found]) -> bool:
    """Whether files look like a learning-management system's download (not one student's own archive)."""
    return any(f.relative.name == "submission_metadata.yml" or (len(f.relative.parts) == 1 and (
        CANVAS.match(f.relative.name) or BLACKBOARD.match(f.relative.name)))
        or (len(f.relative.parts) > 1 and (MOODLE.match(f.relative.parts[0]) or GRADESCOPE.match(f.relative.parts[0])))
        for f in files)


def without_common_folder(files: list[Found]) -> list[Found]:
    """The files, less a folder that holds them all when what is inside it is an LMS layout (Gradescope's
    assignment_ID_export/, a zip of one folder of submissions)."""
    tops = {f.relative.parts[0] for f in files}
    if len(tops) != 1 or any(len(f.relative.parts) < 2 for f in files):
        return files
    inner = [Found(PurePosixPath(*f.relative.parts[1:]), f.shown, f.load, f.size, f.date, f.plain) for f in files]
    return without_common_folder(inner) if lms_layout(inner) or len({f.relative.parts[0] for f in inner}) > 1 \
        else files


def gradescope_names(files: list[Found]) -> dict[str, str]:
    """submission id -> student name, from Gradescope's submission_metadata.yml (read by pattern, not parsed)."""
    meta = next((f for f in files if f.relative.name == "submission_metadata.yml"), None)
    if meta is None or meta.size > 10 * MAX_SUBMISSION:
        return {}
    names, current = {}, None
    for line in meta.load().decode("utf-8", errors="replace").splitlines():
        if match := re.match(r"^:?submission_(\d+):", line):
            current = match[1]
        elif (match := re.match(r"^\s*-?\s*:name:\s*(.+?)\s*$", line)) and current and current not in names:
            names[current] = match[1].strip("'\"")
    return names


def owner(found: Found, names: dict[str, str]) -> tuple[str, tuple] | None:
    """(student, order among their attempts) of a file; None for a download's own receipts and metadata."""
    parts, name = found.relative.parts, found.relative.name
    if name == "submission_metadata.yml":
        return None
    if len(parts) > 1:  # a folder per student (Moodle's and Gradescope's are named by the system)
        if match := GRADESCOPE.match(parts[0]):
            return names.get(match["id"], parts[0]), ("", 0, found.date)
        if match := MOODLE.match(parts[0]):
            return match["student"], ("", 0, found.date)
        return parts[0], ("", 0, found.date)
    if match := BLACKBOARD.match(name):
        return (match["student"], (match["attempt"], 0, found.date)) if match["file"] else None
    if match := CANVAS.match(name):
        return match["student"], ("", int(match["attempt"] or 0), found.date)
    for suffix in (".py.txt", *SOURCES):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix), ("", 0, found.date)
    return PurePosixPath(name).stem or name, ("", 0, found.date)


def submission_of(student: str, files: list[tuple[tuple, Found]]) -> Submission:
    """One student's row from all their files: the latest one holding the blanks' markers, the others listed."""
    readable, problems = [], []
    for order, f in files:
        if f.refused:
            problems.append((f, f"{f.relative.name} is {f.refused}, not a regular file: it was not read"))
            continue
        if not f.relative.name.endswith(SOURCES):
            continue
        try:
            text = python_text(f.relative.name, f.load())
            readable.append(((("BEGIN BLANK" in text), order, f.relative.name == "resnet.py"), f, text))
        except (UserError, OSError) as error:
            problems.append((f, str(error)))
    if not readable:
        if problems:
            return Submission(student, problems[-1][0].shown, problem=problems[-1][1], files=len(files))
        kinds = ", ".join(sorted({f.relative.suffix or f.relative.name for _, f in files}))
        return Submission(student, files[0][1].shown, files=len(files),
                          problem=f"no Python file, notebook or text copy of one ({kinds}): nothing to grade")
    readable.sort(key=lambda item: item[0])
    (markers, _, _), chosen, text = readable[-1]
    plain_py = chosen.plain and chosen.relative.name.endswith(".py")
    submission = Submission(student, chosen.shown, None if plain_py else text, files=len(files))
    others = [str(f.relative) for _, f, _ in readable[:-1]] + [str(f.relative) for f, _ in problems]
    others += [str(f.relative) for _, f in files if not f.relative.name.endswith(SOURCES) and not f.refused]
    if others:
        submission.review.append(f"{len(others)} other file(s) of this student, not graded: {', '.join(others)}")
    if not markers:
        submission.review.append(f"{chosen.relative.name} holds no BEGIN BLANK marker: is it the assignment?")
    return submission


def one_student(folder: Path, student: str) -> Submission | None:
    """Every file of a folder as one student's (Gradescope's submission/ folder); None when it is empty."""
    files = files_in_folder(folder)
    return submission_of(student, [(("", 0, f.date), f) for f in files]) if files else None


def find_submissions(target: Path) -> Intake:
    """The rows of a folder, a zip archive or a single file: one per student, every file seen in one of them."""
    if target.is_file() and not target.name.endswith((*SOURCES, ".zip")):
        raise UserError(f"{target}: give a resnet.py, a notebook, a folder of submissions or a .zip of them")
    if target.is_file() and not target.name.endswith(".zip"):
        found = Found(PurePosixPath(target.name), target, lambda: submission_bytes(target), 0, 0.0, True)
        return Intake([submission_of(owner(found, {})[0], [(("", 0, 0.0), found)])], 1)
    files = files_in_zip(target) if target.is_file() else []
    for f in [] if target.is_file() else files_in_folder(target):
        if f.relative.suffix == ".zip" and len(f.relative.parts) == 1 and f.plain:
            try:
                inside = files_in_zip(f.shown)
            except UserError:
                files.append(f)  # a damaged archive: the row of its name says so
                continue
            if not lms_layout(without_common_folder(inside)):  # a student's own archive: their folder
                inside = [Found(PurePosixPath(f.relative.stem, *g.relative.parts), g.shown, g.load, g.size, g.date)
                          for g in inside]
            files += inside
        else:
            files.append(f)
    files = without_common_folder(files) if files else files
    names = gradescope_names(files)
    students: dict[str, list[tuple[tuple, Found]]] = {}
    for f in files:
        if (who := owner(f, names)) is not None:
            students.setdefault(who[0], []).append((who[1], f))
    if not students:
        raise UserError(f"{target} holds no submission: expected one STUDENT.py (or .ipynb) per student, one "
                        "folder per student, or a Canvas, Moodle, Blackboard or Gradescope download (docs/grading.md)")
    return Intake([submission_of(student, own) for student, own in sorted(students.items())], len(files))
