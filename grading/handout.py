"""The repository students get: the skeleton as resnet.py, what `python main.py` needs, the tests, the self-check.

No reference answers and no grader go in. Its README (handout_README.md) is filled in with the blanks, the data
archive's path when the TA names it, and the time and accuracy of README.md's measured run.

The Python modules to copy are found in one place,
`handout_modules`: every local module that main.py, check.py, prepare_data.py and the tests import,
followed through the modules they import in turn (imports inside functions included).
"""
from __future__ import annotations

import ast
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from course.cli import UserError, write_atomically
from grading import PACKAGE, REFERENCE, ROOT
from grading.compare import Reference
from grading.forms import code_tokens
from grading.markers import make_skeleton

STARTS = ("main.py", "check.py", "prepare_data.py", "tests/conftest.py", "tests/test_resnet.py")
# The grader; the reference (the skeleton replaces it); and the reports' CIFAR-stem ResNet-50, whose worked
# bottleneck block is too close to the answers (main.py --model resnet50-cifar then says it is not in the handout).
NEVER = ("grade.py", "grading/", "resnet.py", "course/resnet_cifar.py")
# checkpoints/README.md stays out: it points to docs/ and tests the handout lacks (its README describes the checkpoints)
DATA = ("pytest.ini", "requirements.txt", "tests/test_resnet.py", "tests/conftest.py", "data/README.md")
GITIGNORE = "data/*\n!data/README.md\nruns/\n.venv/\n__pycache__/\n.pytest_cache/\n"  # data/README.md names it
CHECKPOINTS = {  # what the students' README says of each shipped checkpoint, after its size
    "resnet50_cifar10.pt": "the pretrained ResNet-50 (fp16 weights) that `python main.py` loads into your "
                           "`resnet.py`",
    "vgg16_cifar10.pt": "a pretrained VGG16-BN (fp16 weights; `vgg.py`), as in the course: "
                        "`python main.py --model vgg16`",
}


def module_file(name: str) -> str | None:
    """The project's file of a dotted module name ('course.loops' -> 'course/loops.py'), if it has one."""
    path = ROOT / (name.replace(".", "/") + ".py")
    return path.relative_to(ROOT).as_posix() if path.is_file() else None


def local_imports(path: Path) -> set[str]:
    """The project's files that a Python file imports (`import utils`, `from course import cli, speed`,
    `from course.loops import evaluate`), imports inside functions included; never those of NEVER."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    files = {module_file(name) for name in names} - {None}
    return {file for file in files if not file.startswith(NEVER)}


def handout_modules() -> list[str]:
    """The project's modules the handout needs, as file names relative to the root."""
    todo = [ROOT / start for start in STARTS if (ROOT / start).is_file()]
    found = {path.relative_to(ROOT).as_posix() for path in todo if path.suffix == ".py"
             and not path.relative_to(ROOT).as_posix().startswith("tests/")}
    while todo:
        for name in local_imports(todo.pop()):
            if name not in found:
                found.add(name)
                todo.append(ROOT / name)
    return sorted(found)


def shipped_checkpoints(root: Path = ROOT) -> list[str]:
    """The checkpoints the handout carries, all of checkpoints/ (ResNet-50 and VGG16-BN), relative to the root."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "checkpoints").glob("*.pt"))


def handout_files() -> list[str]:
    """Every file copied into the handout as it is, relative to the root."""
    return handout_modules() + [f for f in DATA if (ROOT / f).is_file()] + shipped_checkpoints()


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
    return "\n".join(f"- `{name}` ({(root / name).stat().st_size / 1e6:.1f} MB): "
                     f"{CHECKPOINTS.get(Path(name).name, 'pretrained weights')}" for name in shipped_checkpoints(root))


def student_readme(ref: Reference, data_archive: str | None = None) -> str:
    """The students' README: the table of blanks, the data, the measured time and accuracy, the checkpoints."""
    accuracy, took = measured_run()
    fields = {
        "blanks": "\n".join(f"- `{b.id}` ({b.points} points): {b.hint}" for b in ref.blanks.values()),
        "offline": offline_text(data_archive),
        "time": took,
        "accuracy": f"    {accuracy}\n    Saved the fine-tuned weights to runs/resnet50_finetuned_<date>-<time>.pt",
        "checkpoints": checkpoint_lines(),
    }
    text = (PACKAGE / "handout_README.md").read_text(encoding="utf-8")
    for name, value in fields.items():
        text = text.replace("{" + name + "}", value)
    return text


def leaked_answers(folder: Path, ref: Reference) -> list[str]:
    """`file: line` for every reference answer line found in a text file of the folder."""
    answers = {" ".join(code_tokens([line])) for b in ref.blanks.values() for line in b.lines}
    answers = {a for a in answers if len(a) > 12}
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".py", ".md", ".txt", ".ini"):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if " ".join(code_tokens([line])) in answers:
                    found.append(f"{path.relative_to(folder)}: {line.strip()}")
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
        if leaks := leaked_answers(partial, ref):
            raise UserError("the handout would hold reference answers: " + "; ".join(leaks[:5]))
        partial.chmod(0o755)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
