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
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docs" / "training" / "README.md",
        ROOT / "experiments" / "README.md", ROOT / "checkpoints" / "README.md", ROOT / "data" / "README.md"]
SCRIPTS = sorted((ROOT / "tools").glob("*.sh"))

# The commands the documentation may show, as `python X.py` (a script at the top level) or `python -m X`.
ENTRY_POINTS = ("main", "train", "check", "prepare_data", "grade", "experiments.reports", "experiments.bench",
                "experiments.bench_compile", "tools.train_teacher")
PACKAGES = ("course", "experiments", "grading", "tools", "tests")  # folders of the project's modules (tests last)
NOT_IN_GIT = ("data/", "runs/")  # made by the commands themselves (data/README.md is the exception)

# Names in backticks that are not files of this project: what a command writes, or a student's file, or a file of
# the autograder's zip. Placeholders (STUDENT/, TREE/) and paths under data/ and runs/ need no entry.
NOT_PROJECT_FILES = {"alice.py", "your/resnet.py", "student/resnet.py", "submissions/", "setup.sh",
                     "sitecustomize.py", "handout/", "autograder.zip", "grades.csv", "results.json"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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


# ------------------------------------------------------------------- reading shell commands

@dataclass
class Shown:
    """A command line as a document shows it: where, and its words once the shell has split it."""
    where: str
    words: list[str]
    inline: bool = False  # a span of prose: `python -m experiments.reports` alone names the program


SEPARATORS = {"&&", "||", ";", "|", "|&", "&", "(", ")", ";;"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>", "&>>", "<&", ">|"}
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")


def expand(word: str, variables: dict[str, str]) -> str:
    """$NAME, ${NAME} and ${NAME:-default} replaced where the script or block set NAME (or gave a default)."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        if name in variables:
            return variables[name]
        return match.group(2) if match.group(2) is not None else match.group(0)
    for _ in range(3):
        word = VARIABLE.sub(value, word)
    return word


def simple_commands(line: str, variables: dict[str, str]) -> list[list[str]]:
    """The simple commands of one logical shell line, as word lists, without redirections and comments.

    A line that is only assignments (NAME=value) sets variables for the lines after it."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    tokens = list(lexer)
    skip = False
    for i, token in enumerate(tokens):
        if skip:
            skip = False
        elif token in SEPARATORS:
            commands.append(words)
            words = []
        elif token in REDIRECTIONS:
            if words and words[-1].isdigit() and i and tokens[i - 1] == words[-1]:
                words.pop()  # the 2 of 2>&1
            skip = True
        elif VARIABLE.fullmatch(token):  # $FLAGS: the shell splits what an unquoted variable holds
            words += expand(token, variables).split() or [token]
        else:
            words.append(expand(token, variables))
    commands.append(words)
    commands = [words for words in commands if words]
    for words in commands:
        if all(ASSIGNMENT.match(word) for word in words):
            for word in words:
                name, value = word.split("=", 1)
                variables[name] = value
    return commands


def logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines joined where they end with a backslash; a leading `$ ` prompt taken away."""
    joined, start, parts = [], None, []
    for number, line in lines:
        if start is None:
            start = number
            line = re.sub(r"^\s*\$ ", "", line)
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(parts)))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


MAYBE_COMMAND = re.compile(r"\bpython[\d.]*\b|\btorchrun\b|\bbash\b|\bpip\b|\.py\b|\$py\b")


def shell_commands(where: str, lines: list[tuple[int, str]], variables: dict[str, str] | None = None,
                   problems: list[str] | None = None) -> list[Shown]:
    """The simple commands of a block of shell lines (a script, a code block or an inline span)."""
    variables = {} if variables is None else variables
    shown = []
    for number, line in logical_lines(lines):
        try:
            commands = simple_commands(line, variables)
        except ValueError as error:  # unbalanced quotes: output, not a command, unless it names our code
            if MAYBE_COMMAND.search(line) and problems is not None:
                problems.append(f"{where}:{number}: cannot split as a shell would ({error}): {line.strip()}")
            continue
        shown += [Shown(f"{where}:{number}", words) for words in commands]
    return shown


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


# ------------------------------------------------------------------- reading markdown

@dataclass
class Markdown:
    path: Path
    blocks: list[list[tuple[int, str]]]  # code blocks, fenced or indented: (line number, line)
    paragraphs: list[tuple[int, str]]  # everything else, paragraph by paragraph: (first line number, text)


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def read_markdown(path: Path) -> Markdown:
    blocks, paragraphs = [], []
    block, fence, indented, paragraph, start = None, None, False, [], 0

    def end_paragraph():
        nonlocal paragraph
        if paragraph:
            paragraphs.append((start, "\n".join(paragraph)))
        paragraph = []

    previous_blank = True
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if fence:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            else:
                block.append((number, line))
            continue
        opening = FENCE.match(line)
        if opening:
            end_paragraph()
            fence, indented, block = opening.group(1), False, []
            blocks.append(block)
            continue
        if line.startswith(("    ", "\t")) and line.strip() and (indented or previous_blank and not paragraph):
            if not indented:
                indented, block = True, []
                blocks.append(block)
            block.append((number, line.strip()))
        elif not line.strip():
            end_paragraph()
            previous_blank = True
            continue
        else:
            indented = False
            if not paragraph:
                start = number
            paragraph.append(line)
        previous_blank = False
    end_paragraph()
    return Markdown(path, blocks, paragraphs)


CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def code_spans(doc: Markdown) -> list[tuple[str, str]]:
    """(where, text) of every inline code span, line breaks inside it made spaces."""
    spans = []
    for start, text in doc.paragraphs:
        for match in CODE_SPAN.finditer(text):
            number = start + text[:match.start()].count("\n")
            spans.append((f"{rel(doc.path)}:{number}", " ".join(match.group(2).split())))
    return spans


def links(doc: Markdown) -> list[tuple[str, str]]:
    """(where, target) of every link and image outside code."""
    found = []
    for start, text in doc.paragraphs:
        text = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
        for match in LINK.finditer(text):
            found.append((f"{rel(doc.path)}:{start + text[:match.start()].count(chr(10))}", match.group(1)))
    return found


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    doc = read_markdown(path)
    headings = [line for _, text in doc.paragraphs for line in text.splitlines() if re.match(r"#{1,6} ", line)]
    return {re.sub(r"[^\w\- ]", "", h.lstrip("#").strip().lower()).replace(" ", "-") for h in headings}


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
