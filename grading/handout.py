"""The repository students get: the skeleton as resnet.py, what `python main.py` needs, the tests, the self-check.

No right answer and no grader go in: the build refuses a handout in which any text file holds a right answer to a
blank, the reference's or one of the other forms of tests/submissions.py's RIGHT_ANSWERS (`leaked_answers`). Its
README (handout_README.md) is filled in with the blanks, one line per Python file on why it is there (ROLES), the
data archive's path when the TA names it, and the time and accuracy of README.md's measured run.

The Python modules to copy are found in one place, `handout_modules`: every local module that main.py, check.py,
prepare_data.py and the tests import, followed through the modules they import in turn (imports inside functions
included). The Gradescope autograder's zip follows the grader's imports the same way (`imported_files`).
"""
from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from course.cli import UserError, write_atomically
from grading import PACKAGE, REFERENCE, ROOT
from grading.compare import Reference
from grading.markers import make_skeleton

STARTS = ("main.py", "check.py", "prepare_data.py", "tests/conftest.py", "tests/test_resnet.py")
# The grader; the reference (the skeleton replaces it); and the reports' CIFAR-stem ResNet-50, whose worked
# bottleneck block is too close to the answers (main.py --model resnet50-cifar then says it is not in the handout).
NEVER = ("grade.py", "grading/", "resnet.py", "course/resnet_cifar.py")
# checkpoints/README.md stays out: it points to docs/ and tests the handout lacks (its README describes the checkpoints)
DATA = ("pytest.ini", "requirements.txt", "tests/test_resnet.py", "tests/conftest.py", "data/README.md")
GITIGNORE = "data/*\n!data/README.md\nruns/\n.venv/\n__pycache__/\n.pytest_cache/\n"  # data/README.md names it
# The checkpoints the handout carries, each with what the students' README says of it after its size: only the
# assignment's model's (vgg.py is not in the handout, so neither is checkpoints/vgg16_cifar10.pt).
CHECKPOINTS = {
    "checkpoints/resnet50_cifar10.pt": "the pretrained ResNet-50 (fp16 weights) that `python main.py` loads into "
                                       "your `resnet.py`",
}
# Every Python file of the handout, in the order the students' README lists them, with one line on why it is there.
# A file the handout would carry without a line here stops the build: a new import cannot slip in unexplained.
ROLES = {
    "resnet.py": "**the assignment**: fill in its blanks",
    "main.py": "fine-tunes the pretrained checkpoint with your model, then tests it",
    "check.py": "the self-check: one line per blank",
    "prepare_data.py": "holds out test images from a copy of the training images (offline data)",
    "utils.py": "the data: reads CIFAR-10, makes the batches; the device and the seeds",
    "course/cli.py": "what the scripts share: error messages, options, files written safely",
    "course/loops.py": "the training epoch and the evaluation that `main.py` runs",
    "course/models.py": "the models by name; loads the checkpoint into yours, or names the layer that does not fit",
    "course/speed.py": "picks the fastest settings for your machine (precision, memory layout)",
    "course/assignment.py": "the blanks, sizes and hints `check.py` checks with; how it reads your file",
    "tests/test_resnet.py": "the per-layer tests (`python -m pytest`)",
    "tests/conftest.py": "what those tests share (`--impl FILE` tests another file than `resnet.py`)",
}
# Right answers in other forms than the reference's (RIGHT_ANSWERS, blank id -> answer texts): the build refuses
# a handout that holds any of them. The file itself never goes in (it is imported by no file that does).
RIGHT_ANSWERS_FILE = "tests/submissions.py"


def module_file(name: str) -> str | None:
    """The project's file of a dotted module name ('course.loops' -> 'course/loops.py'), if it has one."""
    for path in (ROOT / (name.replace(".", "/") + ".py"), ROOT / name.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path.relative_to(ROOT).as_posix()
    return None


def local_imports(path: Path, never: tuple[str, ...] = NEVER) -> set[str]:
    """The project's files that a Python file imports (`import utils`, `from course import cli, speed`,
    `from course.loops import evaluate`), imports inside functions included; never those starting with `never`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    files = {module_file(name) for name in names} - {None}
    return {file for file in files if not file.startswith(never)}


def imported_files(starts: list[str], never: tuple[str, ...] = ()) -> list[str]:
    """The project's Python files that the files `starts` import, followed through their own imports, with the
    starts themselves (relative to the root, sorted); never those starting with `never`, nor what only they import."""
    todo = [ROOT / start for start in starts if (ROOT / start).is_file()]
    found = {path.relative_to(ROOT).as_posix() for path in todo if path.suffix == ".py"}
    while todo:
        for name in local_imports(todo.pop(), never):
            if name not in found:
                found.add(name)
                todo.append(ROOT / name)
    return sorted(found)


def handout_modules() -> list[str]:
    """The project's modules the handout needs (the tests aside: DATA copies them), relative to the root."""
    return [name for name in imported_files(list(STARTS), NEVER) if not name.startswith("tests/")]


def shipped_checkpoints(root: Path = ROOT) -> list[str]:
    """The checkpoints the handout carries (those of CHECKPOINTS that exist), relative to the root."""
    return [name for name in CHECKPOINTS if (root / name).is_file()]


def handout_files() -> list[str]:
    """Every file copied into the handout as it is, relative to the root."""
    return handout_modules() + [f for f in DATA if (ROOT / f).is_file()] + shipped_checkpoints()


def python_files() -> list[str]:
    """The handout's Python files: the skeleton resnet.py, the modules, the tests."""
    return ["resnet.py", *(name for name in handout_files() if name.endswith(".py"))]


def file_lines() -> str:
    """The students' README's list of the Python files, one line each on why it is there (ROLES)."""
    files = python_files()
    if unexplained := [name for name in files if name not in ROLES]:
        raise UserError(f"the handout would carry {', '.join(unexplained)} without a line in the students' README "
                        "on why: add one to ROLES in grading/handout.py (or, if students need not get it, stop "
                        "main.py, check.py, prepare_data.py and the tests from importing it)")
    return "\n".join(f"- `{name}`: {role}" for name, role in ROLES.items() if name in files)


def measured_run() -> tuple[str, str]:
    """The accuracy line and the time ('4 min 9 s') of `python main.py` in README.md's expected output."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    accuracy = re.search(r"^Accuracy of the model on the test images: .* %$", readme, re.MULTILINE)
    done = re.search(r"^Done in (.+) on cpu\.$", readme, re.MULTILINE)
    if not (accuracy and done):  # tests/test_grade_handout.py keeps this from happening
        raise UserError("README.md's expected output lacks its accuracy or 'Done in ... on cpu.' line, which the "
                        "students' README quotes: restore them")
    return accuracy.group(0), done.group(1)


def offline_text(data_archive: str | None) -> str:
    """How students get the data without internet: the TA's archive when named, else whom to ask."""
    commands = ("    tar xzf {} -C data\n"
                "    python prepare_data.py             # holds out 5,000 of them as test images\n"
                "    python main.py                     # finds them in data/cifar10-split by itself")
    if data_archive:
        # quoted for the shell where it needs it; a plain path (~ included, so that it expands) stays as typed
        path = data_archive if re.fullmatch(r"[\w@%+=:,./~-]+", data_archive) else shlex.quote(data_archive)
        return ("Offline, use the course's copy of the 50,000 training images (a JPEG archive), from this "
                "folder:\n\n" + commands.format(path))
    return ("Offline, **ask your TA** where the course's copy of the data is. For its JPEG archive of the\n"
            "training images, with ARCHIVE its path, from this folder:\n\n" + commands.format("ARCHIVE"))


def checkpoint_lines(root: Path = ROOT) -> str:
    """One line per checkpoint in the handout: its name, size and what it is."""
    return "\n".join(f"- `{name}` ({(root / name).stat().st_size / 1e6:.1f} MB): {CHECKPOINTS[name]}"
                     for name in shipped_checkpoints(root))


def student_readme(ref: Reference, data_archive: str | None = None) -> str:
    """The students' README: the table of blanks, the data, the measured time and accuracy, the checkpoints."""
    accuracy, took = measured_run()
    fields = {
        "blanks": "\n".join(f"- `{b.id}` ({b.points} points): {b.hint}" for b in ref.blanks.values()),
        "offline": offline_text(data_archive),
        "time": took,
        "accuracy": f"    {accuracy}\n    Saved the fine-tuned weights to runs/resnet50_finetuned_<date>-<time>.pt",
        "checkpoints": checkpoint_lines(),
        "files": file_lines(),
    }
    text = (PACKAGE / "handout_README.md").read_text(encoding="utf-8")
    for name, value in fields.items():
        text = text.replace("{" + name + "}", value)
    return text


def known_answers(ref: Reference) -> dict[str, list[str]]:
    """Blank id -> every right answer the project holds: the reference's, then RIGHT_ANSWERS_FILE's other forms."""
    answers = {blank.id: ["".join(blank.lines)] for blank in ref.blanks.values()}
    path = ROOT / RIGHT_ANSWERS_FILE
    if path.is_file():
        spec = importlib.util.spec_from_file_location("right_answers", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for blank_id, texts in getattr(module, "RIGHT_ANSWERS", {}).items():
            answers.setdefault(blank_id, []).extend(texts)
    return answers


# Tokens for the leak search. Not Python's tokenizer (forms.code_tokens): that one keeps a string literal whole,
# so an answer inside a string (tests/submissions.py's) would hide, and it gives up on Markdown. Quotes, backticks
# and backslashes are no tokens, so that an answer shows through them; `#` is none either (see leak_views).
TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\*\*|//|==|!=|<=|>=|->|[^\s\w#'\"`\\]")
MIN_TOKENS = 6  # `nn.AvgPool2d(2)`; nothing shorter is looked for


def leak_tokens(text: str) -> list[tuple[str, int]]:
    """The text's tokens with their line numbers; `\\n` and `\\t` in strings count as white space."""
    return [(token, number) for number, line in enumerate(re.sub(r"\\[nt]", "  ", text).split("\n"), 1)
            for token in TOKEN.findall(line)]


def leak_views(text: str) -> list[str]:
    """The text three ways, line numbers kept: without comments (comments inside an answer do not hide it), with
    commented-out lines put back first (an answer commented out), and with comments as text (one in a comment)."""
    def without(t: str) -> str:
        return re.sub(r"#[^\n]*", "", t)

    return [without(text), without(re.sub(r"(?m)^([ \t]*#+)+", "", text)), text]


def answer_tokens(text: str) -> list[str]:
    """An answer's tokens, comments and a final comma left out."""
    tokens = [token for token, _ in leak_tokens(re.sub(r"#[^\n]*", "", text))]
    return tokens[:-1] if tokens[-1:] == [","] else tokens


def leak_patterns(answers: dict[str, list[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """What to look for, as space-joined tokens -> blank id: anywhere, every whole answer, and the value alone of an
    assignment (`nn.Linear(1024, num_classes)`); as a line of its own, every line of every answer (one of three
    convolutions is a leak; a single block of layer2, which the per-layer tests build, is one only on its own line)."""
    anywhere, lines = {}, {}
    for blank_id, texts in answers.items():
        for text in texts:
            tokens = answer_tokens(text)
            wholes = [tokens]
            if tokens[:2] == ["self", "."] and "=" in tokens:  # self.fc = ..., self.fc: nn.Linear = ...
                wholes.append(tokens[tokens.index("=") + 1:])
            for whole in wholes:
                if len(whole) >= MIN_TOKENS:
                    anywhere[" ".join(whole)] = blank_id
            for line in text.splitlines():
                if len(tokens := answer_tokens(line)) >= MIN_TOKENS:
                    lines.setdefault(" ".join(tokens), blank_id)
    return anywhere, lines


def find_leaks(text: str, patterns: tuple[dict[str, str], dict[str, str]]) -> list[tuple[int, str]]:
    """(line number, blank id) for every right answer in a text, by the rules (and the result) of leak_patterns."""
    anywhere, own_line = patterns
    found = set()
    for view in leak_views(text):
        tokens = leak_tokens(view)
        joined = " " + " ".join(token for token, _ in tokens) + " "
        for pattern, blank_id in anywhere.items():
            start = joined.find(f" {pattern} ")
            while start >= 0:
                found.add((tokens[joined.count(" ", 1, start + 1)][1], blank_id))
                start = joined.find(f" {pattern} ", start + 1)
        by_line: dict[int, list[str]] = {}
        for token, number in tokens:
            by_line.setdefault(number, []).append(token)
        for number, line in by_line.items():
            if (blank_id := own_line.get(" ".join(line[:-1] if line[-1] == "," else line))) is not None:
                found.add((number, blank_id))
    return sorted(found)


def leaked_answers(folder: Path, answers: dict[str, list[str]]) -> list[str]:
    """`file:line: blank id` for every right answer of `answers` (see known_answers) in a text file of the folder."""
    patterns, found = leak_patterns(answers), []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            if b"\0" in f.read(8192):  # the checkpoints are no text
                continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(folder).as_posix()}:{number}: {blank_id}"
                  for number, blank_id in find_leaks(text, patterns)]
    return found


def write_handout(target: Path, data_archive: str | None = None) -> list[str]:
    """Write the handout into a new folder `target` (built beside it, then renamed); return its files.

    data_archive: where students find the course's JPEG archive of the training images, for the README.
    """
    if target.exists():
        raise UserError(f"{target} already exists: give a new folder (the handout never overwrites one)")
    if data_archive is not None and (not data_archive.strip() or "\n" in data_archive):
        raise UserError("--data-archive must be a path on one line, e.g. /srv/course/cifar10-train-jpg.tar.gz")
    ref = Reference.load(REFERENCE)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        for name in handout_files():
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, partial / name)
        write_atomically(partial / "resnet.py", make_skeleton(ref.text))
        write_atomically(partial / "README.md", student_readme(ref, data_archive))
        write_atomically(partial / ".gitignore", GITIGNORE)
        if leaks := leaked_answers(partial, known_answers(ref)):
            raise UserError("the handout would hold right answers (file:line: blank): " + "; ".join(leaks[:5])
                            + (f" and {len(leaks) - 5} more" if len(leaks) > 5 else ""))
        partial.chmod(0o755)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
