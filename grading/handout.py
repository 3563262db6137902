"""The repository students get: the skeleton as resnet.py, what `python main.py` needs, the tests, the self-check.

No reference answers and no grader go in. The Python modules to copy are found in one place,
`handout_modules`: every local module that main.py, check.py, prepare_data.py and the tests import,
followed through the modules they import in turn (imports inside functions included).
"""
from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path

from common import UserError, write_atomically
from grading import PACKAGE, REFERENCE, ROOT
from grading.compare import Reference
from grading.forms import code_tokens
from grading.markers import make_skeleton

STARTS = ("main.py", "check.py", "prepare_data.py", "tests/conftest.py", "tests/test_resnet.py")
# The grader; the reference (the skeleton replaces it); and the reports' CIFAR-stem ResNet-50, whose worked
# bottleneck block is too close to the answers (main.py --model resnet50-cifar then says it is not in the handout).
NEVER = {"grade", "grading", "resnet", "resnet_cifar"}
DATA = ("pytest.ini", "requirements.txt", "tests/test_resnet.py", "tests/conftest.py", "checkpoints/README.md",
        "data/README.md")


def local_imports(path: Path) -> set[str]:
    """The top-level names a Python file imports that are modules of the project's root folder."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return {name for name in names if (ROOT / f"{name}.py").is_file() and name not in NEVER}


def handout_modules() -> list[str]:
    """The project's modules the handout needs, as file names relative to the root."""
    todo = [ROOT / start for start in STARTS if (ROOT / start).is_file()]
    found = {path.relative_to(ROOT).as_posix() for path in todo if path.parent == ROOT}
    while todo:
        for name in local_imports(todo.pop()):
            if f"{name}.py" not in found:
                found.add(f"{name}.py")
                todo.append(ROOT / f"{name}.py")
    return sorted(found)


def handout_files() -> list[str]:
    """Every file of the handout but resnet.py and README.md, relative to the root."""
    checkpoints = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "checkpoints").glob("*.pt"))
    return handout_modules() + [f for f in DATA if (ROOT / f).is_file()] + checkpoints


def student_readme(ref: Reference) -> str:
    """The students' README, with the table of blanks."""
    rows = "\n".join(f"- `{b.id}` ({b.points} points): {b.hint}" for b in ref.blanks.values())
    return (PACKAGE / "handout_README.md").read_text(encoding="utf-8").replace("{blanks}", rows)


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


def write_handout(target: Path) -> list[str]:
    """Write the handout into a new folder `target` (built beside it, then renamed); return its files."""
    if target.exists():
        raise UserError(f"{target} already exists: give a new folder (the handout never overwrites one)")
    ref = Reference.load(REFERENCE)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        for name in handout_files():
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, partial / name)
        write_atomically(partial / "resnet.py", make_skeleton(ref.text))
        write_atomically(partial / "README.md", student_readme(ref))
        if leaks := leaked_answers(partial, ref):
            raise UserError("the handout would hold reference answers: " + "; ".join(leaks[:5]))
        partial.chmod(0o755)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
