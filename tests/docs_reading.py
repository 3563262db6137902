"""Reading what the documents show: shell command lines as a shell splits them, and markdown's code blocks,
code spans, links and headings. The tests that use them are in test_docs.py."""
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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
