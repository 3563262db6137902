"""The documentation's commands work as written, and its links and file names lead somewhere.

Every shell command that README.md, docs/*.md, docs/training/README.md, experiments/README.md, checkpoints/README.md
and data/README.md show (code blocks, and inline `python ...` spans) and every command of tools/*.sh is read as a
shell would split it. Where it starts the project's Python code (`python main.py`, `python -m experiments.reports`,
`torchrun ... train.py`, `bash tools/...`), the script or module must exist and be runnable, and for the entry points
of ENTRY_POINTS the subcommand and every flag must be ones its argument parser has; a command without placeholders
(`...`, `COMMAND`, `$VAR`) must parse as a whole. The parsers are built in this process: each module is imported once
and its parse_args (or main) stopped at the point where it would parse, so no data set and no training is involved.

The markdown files' relative links and images (and their #anchors), the project files they name in backticks
(`course/speed.py`, `speed.choose`), and the project paths tools/*.sh name must exist.
"""
import argparse
import ast
import contextlib
import functools
import importlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from docs_reading import (
    Markdown,
    Shown,
    anchors,
    code_spans,
    links,
    read_markdown,
    rel,
    shell_commands,
    simple_commands,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docs" / "training" / "README.md",
        ROOT / "experiments" / "README.md", ROOT / "checkpoints" / "README.md", ROOT / "data" / "README.md"]
SCRIPTS = sorted((ROOT / "tools").glob("*.sh"))

# The commands the documentation may show, as `python X.py` (a script at the top level) or `python -m X`.
ENTRY_POINTS = ("main", "train", "check", "prepare_data", "grade", "experiments.reports", "experiments.bench",
                "experiments.bench_compile", "experiments.course_loop", "experiments.profile_step",
                "experiments.grading_cohort", "tools.train_teacher")
PACKAGES = ("course", "experiments", "grading", "tools", "tests")  # folders of the project's modules (tests last)
NOT_IN_GIT = ("data/", "runs/")  # made by the commands themselves (data/README.md is the exception)

# Names in backticks that are not files of this project: what a command writes, or a student's file, or a file of
# the autograder's zip. Placeholders (STUDENT/, TREE/) and paths under data/ and runs/ need no entry.
NOT_PROJECT_FILES = {"alice.py", "your/resnet.py", "student/resnet.py", "submissions/", "setup.sh",
                     "sitecustomize.py", "handout/", "autograder.zip", "grades.csv", "results.json"}




# ------------------------------------------------------------------- the argument parsers of the entry points

class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


@functools.cache
def parser_of(module_name: str) -> argparse.ArgumentParser:
    """The argument parser `python -m module_name` builds: its parse_args (or main) stopped where it would parse."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(module_name)
    build = getattr(module, "parse_args", None) or module.main
    original = argparse.ArgumentParser.parse_args

    def built(self, args=None, namespace=None):
        raise _Built(self)

    argparse.ArgumentParser.parse_args = built
    try:
        build([])
    except _Built as done:
        return done.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{module_name}.{build.__name__}([]) built no argument parser")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def parse_error(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """What the parser says against `args`, or None when it takes them (or prints its help)."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as stop:
        if stop.code not in (0, None):
            return (said.getvalue().strip().splitlines() or [f"exit status {stop.code}"])[-1]
    except Exception as error:  # grade.py's parser raises UserError
        return str(error)
    return None


# ------------------------------------------------------------------- what a command starts, and whether it can

@dataclass
class Started:
    """The project code a command starts: a script (`main.py`) or a module (`experiments.reports`), its arguments."""
    where: str
    command: str
    target: str
    is_module: bool
    args: list[str]
    inline: bool = False


def started(shown: Shown) -> list[Started]:
    """The programs of the project (or pytest, pip, bash scripts) that a simple command starts."""
    words = shown.words
    line = " ".join(words)
    for i, word in enumerate(words):
        name = word.rsplit("/", 1)[-1]
        rest = words[i + 1:]
        if re.fullmatch(r"python[\d.]*", name) or name == "torchrun":
            j = 0
            while j < len(rest):
                if rest[j] in ("-m", "--module") and j + 1 < len(rest):
                    return [Started(shown.where, line, rest[j + 1], True, rest[j + 2:], shown.inline)]
                if rest[j] == "-c":
                    return []  # python -c CODE
                if rest[j].endswith(".py"):
                    return [Started(shown.where, line, rest[j], False, rest[j + 1:], shown.inline)]
                j += 1
            return []
        if name in ("bash", "sh") and rest:
            if rest[0] == "-c" and len(rest) > 1:  # bash -c '...': the commands inside
                return [s for inner in shell_commands(shown.where, [(0, rest[1])]) for s in started(
                    Shown(shown.where, inner.words))]
            if rest[0].endswith(".sh"):
                return [Started(shown.where, line, rest[0], False, rest[1:])]
            return []
        if name in ("pip", "pip3") and rest[:1] == ["install"]:
            return [Started(shown.where, line, "pip", True, rest)]
    return []


def is_placeholder(word: str) -> bool:
    return word == "..." or "$" in word or "<" in word or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", word))


def project_file(target: str, is_module: bool) -> Path | None:
    """The project's file for a script path or a dotted module name; None for a module from elsewhere (pytest)."""
    if not is_module:
        return ROOT / target
    top = target.split(".")[0]
    if top in PACKAGES or (ROOT / f"{top}.py").is_file():
        return ROOT / (target.replace(".", "/") + ".py")
    return None


def problems_of(run: Started) -> list[str]:
    """What is wrong with a command that starts the project's code: an empty list when it works as written."""
    said = f"{run.where}: `{run.command}`"
    if run.target == "pip":
        requirements = [run.args[i + 1] for i, word in enumerate(run.args[:-1]) if word in ("-r", "--requirement")]
        return [f"{said}: no file {name}" for name in requirements if not (ROOT / name).is_file()]
    if run.is_module and run.target == "pytest":
        paths = [word.split("::")[0] for word in run.args if word.startswith("tests")]
        return [f"{said}: no file {path}" for path in paths if not (ROOT / path).exists()]
    path = project_file(run.target, run.is_module)
    if path is None:
        return []
    if not path.is_file():
        what = "module" if run.is_module else "file"
        return [f"{said}: no {what} {run.target} ({rel(path)})"]
    if path.suffix == ".sh":
        return []
    if not run.is_module and path.relative_to(ROOT).parts[0] in PACKAGES[:-1]:  # not tests/
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        return [f"{said}: {run.target} imports the project as a package: run it as python -m {dotted}"]
    if 'if __name__ == "__main__"' not in path.read_text():
        return [f"{said}: {run.target} is not a program (no __main__ block)"]
    module = run.target if run.is_module else path.stem
    if module not in ENTRY_POINTS or run.inline and not run.args:
        return []
    return [f"{said}: {problem}" for problem in argument_problems(parser_of(module), run.args)]


def argument_problems(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """The subcommand and flags `args` name that the parser does not have; then what it says against `args`."""
    known, problems = flags(parser), []
    commands = subcommands(parser)
    if commands:
        command = next((word for word in args if not word.startswith("-")), None)
        if command is None:
            if not {"-h", "--help"} & set(args):
                problems.append(f"no subcommand (one of {', '.join(commands)})")
        elif is_placeholder(command):
            known |= {flag for sub in commands.values() for flag in flags(sub)}
        elif command not in commands:
            problems.append(f"no subcommand {command!r} (there are {', '.join(commands)})")
        else:
            known = flags(commands[command])
    for word in args:
        flag = word.split("=", 1)[0]
        if flag.startswith("-") and flag not in ("-", "--") and not re.fullmatch(r"-[\d.e-]+", flag) \
                and flag not in known:
            problems.append(f"no flag {flag}")
    if not problems and not any(is_placeholder(word) for word in args):
        error = parse_error(parser, args)
        if error:
            problems.append(error)
    return problems


def shown_in_markdown(doc: Markdown, problems: list[str]) -> list[Shown]:
    """The shell commands of a markdown file: its code blocks (each its own script) and its inline commands."""
    where = rel(doc.path)
    shown = [s for block in doc.blocks for s in shell_commands(where, block, problems=problems)]
    for span_where, span in code_spans(doc):
        first = span.split(" ", 1)[0]
        if first in ("python", "python3", "torchrun", "bash"):
            line = span
        elif first.endswith(".py") and " " in span and first[:-3] in ENTRY_POINTS:
            line = f"python {span} ..."  # `train.py --ema`: a flag named, not a whole command
        else:
            continue
        try:
            shown += [Shown(span_where, words, inline=True) for words in simple_commands(line, {})]
        except ValueError as error:
            problems.append(f"{span_where}: cannot split `{span}` as a shell would ({error})")
    return shown


def shown_in_script(path: Path, problems: list[str]) -> list[Shown]:
    lines = list(enumerate(path.read_text().splitlines(), 1))
    return shell_commands(rel(path), lines, problems=problems)


# ------------------------------------------------------------------- the tests

def command_problems(shown: list[Shown]) -> tuple[list[Started], list[str]]:
    runs = [run for s in shown for run in started(s)]
    return runs, [problem for run in runs for problem in problems_of(run)]


@pytest.mark.parametrize("path", DOCS + SCRIPTS, ids=rel)
def test_every_command_shown_works_as_written(path):
    problems = []
    shown = shown_in_script(path, problems) if path.suffix == ".sh" else shown_in_markdown(read_markdown(path),
                                                                                         problems)
    problems += command_problems(shown)[1]
    assert not problems, "\n".join(problems)


def test_the_documents_show_every_entry_point():
    """A guard on the reading itself: the commands found start every entry point the documents are about."""
    problems, shown = [], []
    for path in DOCS + SCRIPTS:
        shown += shown_in_script(path, problems) if path.suffix == ".sh" else shown_in_markdown(
            read_markdown(path), problems)
    runs, _ = command_problems(shown)
    modules = {run.target if run.is_module else run.target.removesuffix(".py") for run in runs}
    assert set(ENTRY_POINTS) - modules == set()  # each shown at least once
    assert len(runs) > 60


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_relative_links_and_images_lead_to_files(path):
    problems = []
    for where, target in links(read_markdown(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"{where}: ({target}): no such file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: ({target}): no heading #{anchor} in {rel(resolved)}")
    assert not problems, "\n".join(problems)


PATH_WORD = re.compile(r"[\w.-]+(?:/[\w.-]+)*/?")
EXTENSIONS = (".py", ".sh", ".md", ".pt", ".png", ".json", ".log", ".txt", ".ini", ".toml", ".zip", ".gz", ".csv")


@functools.cache
def top_level_names(path: Path) -> set[str]:
    """The names a module defines or imports at its top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def module_files(name: str) -> list[Path]:
    """The project's modules a first dotted name can mean: `utils` (top level) or `speed` (course/speed.py)."""
    return [path for path in [ROOT / f"{name}.py", *(ROOT / package / f"{name}.py" for package in PACKAGES)]
            if path.is_file()]


def name_problem(where: str, span: str, doc: Path, folders: tuple[str, ...] = ()) -> str | None:
    """What is wrong with a file name or a `module.name` in backticks, if it is the project's.

    A file name is looked for from the project's root, beside the document, and in `folders` (the folders named on
    the same line: "`course/`: `cli.py`, `speed.py`")."""
    if not PATH_WORD.fullmatch(span) or span in NOT_PROJECT_FILES:
        return None
    if span.startswith(NOT_IN_GIT) or any(re.fullmatch(r"[A-Z]+(\.\w+)?", part) for part in span.split("/")):
        return None
    if "/" in span.rstrip("/") and span.endswith((*EXTENSIONS, "/")) or span.endswith((".py", ".sh")):
        if not any((place / span).exists() for place in [ROOT, doc.parent, *(ROOT / f for f in folders)]):
            return f"{where}: `{span}`: no such file in the project"
        return None
    parts = span.split(".")
    if len(parts) >= 2 and all(part.isidentifier() for part in parts) and parts[0] not in ("self", "torch", "nn"):
        if parts[0] in PACKAGES:  # course.speed.choose
            parts = parts[1:]
        files = module_files(parts[0])
        if files and not any(parts[1] in top_level_names(path) for path in files):
            return f"{where}: `{span}`: {parts[1]} is in none of {', '.join(rel(path) for path in files)}"
    return None


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_file_and_module_names_in_backticks_exist(path):
    spans = code_spans(read_markdown(path))
    folders = {where: tuple(span for w, span in spans if w == where and span.endswith("/")) for where, _ in spans}
    problems = [name_problem(where, span, path, folders[where]) for where, span in spans]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


SCRIPT_PATH = re.compile(r"(?<![\w/.$~-])((?:" + "|".join(PACKAGES + ("docs", "checkpoints")) + r")/[\w./-]*\w"
                         r"|\w+\.py\b)")


@pytest.mark.parametrize("path", SCRIPTS, ids=rel)
def test_paths_named_in_tools_scripts_exist(path):
    text = path.read_text()
    missing = sorted({word for word in SCRIPT_PATH.findall(text) if not (ROOT / word).exists()})
    assert not missing, f"{rel(path)} names {', '.join(missing)}, which the project does not have"


# ------------------------------------------------------------------- the checks catch what they should

@pytest.mark.parametrize("line, problem", [
    ("python experiments.py three-class --data-dir data/cifar10-jpg", "no file experiments.py"),
    ("python bench.py", "no file bench.py"),
    ("python -m experiments.report three-class", "no module experiments.report"),
    ("python experiments/bench.py --steps 2", "run it as python -m experiments.bench"),
    ("python -m course.cli", "not a program"),
    ("python -m experiments.reports three-klass", "no subcommand 'three-klass'"),
    ("python -m experiments.reports", "no subcommand"),
    ("python main.py --no-such-flag 3", "no flag --no-such-flag"),
    ("python main.py --model resnet51", "invalid choice"),
    ("python grade.py check a.py --jobs 0", "--jobs"),
    ("torchrun --standalone --nproc_per_node 2 train.py --epoch 3", "no flag --epoch"),
    ("OMP_NUM_THREADS=2 nice -n 10 python -m tools.train_teacher --resume --epochs 2 --out", "expected one argument"),
    ("with-run-paused bash -c 'python grade.py chek a.py'", "no subcommand 'chek'"),
    ("pip install -r requirement.txt", "no file requirement.txt"),
])
def test_a_broken_command_is_caught(line, problem):
    runs, problems = command_problems(shell_commands("example", [(1, line)]))
    assert runs and any(problem in said for said in problems), problems


def test_working_commands_pass():
    lines = ["python main.py --model vgg16 --epochs 0 --precision fp32", "python -m experiments.reports COMMAND --help",
             'py="${PYTHON:-.venv/bin/python}"', '"$py" -m experiments.reports figures runs/x --data-dir "$data" 2>&1',
             "python -m pytest tests/test_resnet.py --impl your/resnet.py", "python check.py resnet.py",
             "torchrun --nnodes 2 --rdzv-id run7 -m experiments.reports three-class --epochs 2"]
    runs, problems = command_problems(shell_commands("example", list(enumerate(lines, 1))))
    assert len(runs) == 6 and not problems, problems


def test_a_missing_link_or_file_name_is_caught(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nSee [this](nowhere.md), [that](doc.md#title), [there](doc.md#nothing) and "
                   "`speed.py`, `course/speed.py`, `speed.nothing`, `speed.choose`.\n\n```bash\n"
                   "python experiments.py figures\n```\n")
    assert [target for _, target in links(read_markdown(doc))] == ["nowhere.md", "doc.md#title", "doc.md#nothing"]
    assert anchors(doc) == {"title"}
    spans = code_spans(read_markdown(doc))
    assert [bool(name_problem(where, span, doc)) for where, span in spans] == [True, False, True, False]
    problems = []
    assert command_problems(shown_in_markdown(read_markdown(doc), problems))[1]
