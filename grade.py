#!/usr/bin/env python3
"""Grading tools for the ResNet-50 assignment: make the student skeleton, grade submissions.

    python grade.py skeleton [-o student/resnet.py]     the file students get
    python grade.py check alice.py                      a full report for one file
    python grade.py check submissions/ --csv grades.csv --json results.json

Every part a student fills in sits between two marker lines of resnet.py:

    # BEGIN BLANK <id> points=<n> hint="<hint>"
    ...answer...
    # END BLANK <id>

How a blank is graded
    The verdict compares the student's answer with the reference answer:
      same        identical once comments and whitespace are dropped;
      equivalent  the same code after parsing (`ast`): arguments given by keyword or
                  by position, `2` or `stride=2`, `(3, 3)` or `3`, `nn.X` or `torch.nn.X`,
                  a default written out or left out, `*[block for _ in range(5)]` for
                  five copies of `block`; or one of the accepted alternatives below;
      different   anything else, with notes on what differs;
      missing     no answer, or the marker lines were removed or changed.
    The per-layer tests of tests/test_resnet.py that cover the blank must pass too.
    A blank earns its full points when it is same or equivalent AND its tests pass,
    0 otherwise. A file that does not import (or times out, or crashes) earns 0.
    One mistake shows, and costs, only in its own blank: each blank's tests run on the
    student's file with the student's OTHER wrong answers replaced by the reference
    ones (a wrong fc would otherwise fail the tests of every layer before it).

Accepted alternatives (the layer sizes and parameter counts stay those of the assignment)
    avgpool    nn.AvgPool2d(2) with any stride (or ceil_mode, count_include_pad): the map
               is 2x2, so every stride takes the one 2x2 window; nn.AdaptiveAvgPool2d(1)
               or ((1, 1)): the same average over the whole map.
    stem_conv  the 7x7 stride-2 conv with another padding, if a 32x32 image still
               gives 16x16. Only padding=3 does: padding=2 gives 15x15, so it is
               "different" (even though the max-pool then still gives 8x8).
    stem_pool  the 3x3 stride-2 max-pool with another padding or ceil_mode, if 16x16
               still gives 8x8: padding=1, or padding=0 with ceil_mode=True (padding=0
               alone gives 7x7).
    Not accepted: `*[block] * 5` (five times the SAME block: its weights are shared).

Untrusted code
    Each submission runs in its own process (the tests, via pytest) in a temporary
    folder, as resnet.py, with a time limit (--timeout, the whole process group is
    killed), a memory limit (--memory-gb, RLIMIT_AS: torch alone maps about 3.4 GB
    of address space, so keep it at 4 or more) and sockets blocked by a
    sitecustomize.py. Plain Python cannot stop a file from reading or writing other
    files: grade as a user who can write nothing that matters. The points never
    trust the student's process alone: the verdicts are computed here, from the text.

Output of --json: Gradescope's results format, {"score": ..., "tests": [{"name",
"score", "max_score", "output"}, ...]}, one object for one file; for a folder, a
dict of these objects keyed by student name.
"""
from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import tokenize
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent
REFERENCE = ROOT / "resnet.py"
TEST_FILES = (ROOT / "tests" / "conftest.py", ROOT / "tests" / "test_resnet.py")

# The tests of tests/test_resnet.py that cover each blank (test names start with these).
BLANK_TESTS = {
    "block_downsample": ("test_block_downsamples[", "test_block_parameter_counts"),
    "block_same": ("test_block_keeps_size[", "test_block_parameter_counts"),
    "stem_conv": ("test_layer_shape[layer1-",),
    "stem_pool": ("test_layer_shape[layer1-",),
    "layer2": ("test_layer_shape[layer2-",),
    "layer3": ("test_layer_shape[layer3-",),
    "layer4": ("test_layer_shape[layer4-",),
    "avgpool": ("test_layer_shape[avgpool-",),
    "fc": ("test_fc_shape", "test_parameter_count["),
}

# Parameter names of the calls an answer may contain, in positional order, and their defaults.
SIGNATURES = {
    "conv1x1": ("in_channels", "out_channels", "stride", "padding"),
    "conv3x3": ("in_channels", "out_channels", "stride", "padding"),
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding",
               "dilation", "groups", "bias", "padding_mode"),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override"),
    "AdaptiveAvgPool2d": ("output_size",),
    "Linear": ("in_features", "out_features", "bias"),
    "ResidualBlock": ("in_channels", "middle_channels", "out_channels", "downsample"),
}
DEFAULTS = {
    "Conv2d": {"stride": "1", "padding": "0", "dilation": "1", "groups": "1", "bias": "True",
               "padding_mode": "'zeros'"},
    "MaxPool2d": {"stride": "None", "padding": "0", "dilation": "1", "return_indices": "False",
                  "ceil_mode": "False"},
    "AvgPool2d": {"stride": "None", "padding": "0", "ceil_mode": "False",
                  "count_include_pad": "True", "divisor_override": "None"},
    "Linear": {"bias": "True"},
    "ResidualBlock": {"downsample": "False"},
}
SIZE_PARAMS = {"kernel_size", "stride", "padding", "dilation", "output_size"}

STRIDE_NOTE = "shapes are still right, but the stride belongs on the first 1x1 (the assignment's design)"
PADDING_NOTE = "padding=0 on the 3x3: H and W shrink by 2 in every block (a 3x3 needs padding=1 to keep them)"
FULL_POINTS = ("same", "equivalent")

BEGIN = re.compile(r'^(?P<indent>[ \t]*)# BEGIN BLANK (?P<id>\w+) points=(?P<points>\d+) hint="(?P<hint>[^"]*)"[ \t]*$')
LOOSE_BEGIN = re.compile(r"^\s*#\s*BEGIN BLANK\s+(?P<id>\w+)")
LOOSE_END = re.compile(r"^\s*#\s*END BLANK\s+(?P<id>\w+)\s*$")


class UserError(Exception):
    """A problem with the user's input: printed as one `error: ...` paragraph, exit code 2."""


# ------------------------------------------------------------------ blank markers

@dataclass
class Blank:
    """One blank of a file: its marker lines (0-based indices) and the answer lines between them."""
    id: str
    begin: int
    end: int
    lines: list[str]
    points: int = 0
    hint: str = ""


def find_blanks(text: str) -> tuple[dict[str, Blank], dict[str, str]]:
    """The blanks of a (student's) file, and a problem message per blank whose markers are broken."""
    lines = text.splitlines(keepends=True)
    blanks: dict[str, Blank] = {}
    problems: dict[str, str] = {}
    open_id, open_at = None, 0
    for i, line in enumerate(lines):
        if begin := LOOSE_BEGIN.match(line):
            if open_id:
                problems[open_id] = f"BEGIN BLANK {begin['id']} (line {i + 1}) comes before END BLANK {open_id}"
            open_id, open_at = begin["id"], i
            if open_id in blanks or open_id in problems:
                problems[open_id] = f"the markers of blank {open_id} appear more than once"
        elif end := LOOSE_END.match(line):
            if end["id"] != open_id:
                problems.setdefault(end["id"], f"END BLANK {end['id']} (line {i + 1}) has no BEGIN BLANK before it")
            elif open_id not in problems:
                blanks[open_id] = Blank(open_id, open_at, i, lines[open_at + 1:i])
            open_id = None
    if open_id:
        problems.setdefault(open_id, f"BEGIN BLANK {open_id} (line {open_at + 1}) has no END BLANK line")
    for blank_id in problems:
        blanks.pop(blank_id, None)
    return blanks, problems


def reference_blanks(text: str) -> dict[str, Blank]:
    """The blanks of the reference, with points and hints; any broken marker is an error."""
    blanks, problems = find_blanks(text)
    if problems:
        raise UserError(f"{REFERENCE.name}: " + "; ".join(problems.values()))
    lines = text.splitlines()
    for blank in blanks.values():
        match = BEGIN.match(lines[blank.begin])
        if not match:
            raise UserError(f"{REFERENCE.name} line {blank.begin + 1}: a BEGIN line must read "
                            f'# BEGIN BLANK <id> points=<n> hint="<hint>"')
        blank.points, blank.hint = int(match["points"]), match["hint"]
    if not blanks:
        raise UserError(f"{REFERENCE.name} has no BEGIN BLANK / END BLANK markers")
    return blanks


def fill_blanks(text: str, answers: dict[str, list[str]]) -> str:
    """The text with the answer lines of the given blanks replaced (marker lines kept)."""
    lines = text.splitlines(keepends=True)
    blanks, _ = find_blanks(text)
    for blank in sorted(blanks.values(), key=lambda b: b.begin, reverse=True):
        if blank.id in answers:
            lines[blank.begin + 1:blank.end] = answers[blank.id]
    return "".join(lines)


def placeholder(blank: Blank, begin_line: str) -> list[str]:
    """The skeleton's lines for a blank: the hint, and `x = None` where the answer is an assignment."""
    indent = begin_line[:len(begin_line) - len(begin_line.lstrip())]
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


def make_skeleton(text: str) -> str:
    """The student version of the reference: every answer replaced by its placeholder."""
    blanks = reference_blanks(text)
    lines = text.splitlines(keepends=True)
    skeleton = fill_blanks(text, {b.id: placeholder(b, lines[b.begin]) for b in blanks.values()})
    compile(skeleton, "skeleton", "exec")  # the placeholders must leave valid Python
    return skeleton


# ------------------------------------------------------------------ comparing answers

class CallForm(NamedTuple):
    """A call in normal form: the function's last name and every argument by parameter name."""
    name: str
    args: tuple[tuple[str, object], ...]

    def arg(self, name: str) -> object:
        """The normal form of one argument, None if absent."""
        return dict(self.args).get(name)


class AssignForm(NamedTuple):
    """An assignment in normal form: `self.fc = nn.Linear(...)`."""
    targets: tuple[str, ...]
    value: object


def code_tokens(lines: list[str]) -> list[str]:
    """The answer's tokens without comments, indentation and line breaks."""
    source = textwrap.dedent("".join(lines))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER}
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    except (tokenize.TokenError, SyntaxError):
        return re.sub(r"#.*", "", source).split()


def parse_answer(lines: list[str], as_items: bool) -> list[ast.AST]:
    """The answer's items (as inside `nn.Sequential(...)`) or statements, as ast nodes."""
    source = textwrap.dedent("".join(lines))
    if as_items:
        return list(expand_repeats(ast.parse("[\n" + source + "\n]", mode="eval").body.elts))
    return ast.parse(source).body


def expand_repeats(items: list[ast.expr]):
    """Yield the items, with `*[x for _ in range(n)]` (or a generator) expanded to n copies of x."""
    for item in items:
        repeated = repetition(item.value) if isinstance(item, ast.Starred) else None
        yield from [repeated[0]] * repeated[1] if repeated else [item]


def repetition(node: ast.expr) -> tuple[ast.expr, int] | None:
    """(x, n) for `[x for _ in range(n)]` or `(x for _ in range(n))` where x does not use the loop name."""
    if not isinstance(node, (ast.ListComp, ast.GeneratorExp)) or len(node.generators) != 1:
        return None
    loop = node.generators[0]
    if loop.ifs or not isinstance(loop.target, ast.Name) or not isinstance(loop.iter, ast.Call):
        return None
    if ast.unparse(loop.iter.func) != "range" or len(loop.iter.args) != 1 or loop.iter.keywords:
        return None
    count = loop.iter.args[0]
    if not isinstance(count, ast.Constant) or type(count.value) is not int:
        return None
    if any(isinstance(n, ast.Name) and n.id == loop.target.id for n in ast.walk(node.elt)):
        return None
    return node.elt, count.value


def normal_form(node: ast.AST) -> object:
    """A comparable form of an ast node: calls as CallForm, other expressions as their source."""
    if isinstance(node, ast.Call):
        return call_form(node)
    if isinstance(node, ast.Assign):
        return AssignForm(tuple(ast.unparse(t) for t in node.targets), normal_form(node.value))
    if isinstance(node, ast.Expr):
        return normal_form(node.value)
    if isinstance(node, (ast.Tuple, ast.List)) and any(isinstance(e, ast.Call) for e in node.elts):
        return tuple(normal_form(e) for e in node.elts)
    return ast.unparse(node)


def call_form(node: ast.Call) -> CallForm:
    """The call with positional arguments named by SIGNATURES and defaults filled in."""
    name = ast.unparse(node.func).rsplit(".", 1)[-1]
    params = SIGNATURES.get(name, ())
    args = dict(DEFAULTS.get(name, {}))
    for i, value in enumerate(node.args):
        args[params[i] if i < len(params) else f"argument {i + 1}"] = normal_form(value)
    for keyword in node.keywords:
        args[keyword.arg or "**"] = normal_form(keyword.value)
    for key in SIZE_PARAMS & args.keys():  # (3, 3) means 3
        parts = re.fullmatch(r"\((.+), \1\)", str(args[key]))
        args[key] = parts[1] if parts else args[key]
    if name.endswith("Pool2d") and args.get("stride") == "None":  # a pool's stride defaults to its size
        args["stride"] = args.get("kernel_size")
    order = {p: i for i, p in enumerate(params)}
    return CallForm(name, tuple(sorted(args.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))))


def the_call(forms: list[object]) -> tuple[tuple[str, ...], CallForm] | None:
    """(assignment targets, call) for an answer that is one call or `x = call`, else None."""
    if len(forms) != 1:
        return None
    targets, value = (forms[0].targets, forms[0].value) if isinstance(forms[0], AssignForm) else ((), forms[0])
    return (targets, value) if isinstance(value, CallForm) else None


def out_size(size: int, call: CallForm) -> int | None:
    """The output size of a conv or pool call for a size x size input (PyTorch's formula), None if unknown."""
    try:
        kernel, stride, padding, dilation = (int(str(call.arg(p)))
                                             for p in ("kernel_size", "stride", "padding", "dilation"))
    except ValueError:
        return None
    if stride <= 0:
        return None
    ceil = call.arg("ceil_mode") == "True"
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:  # the last window must start inside the input
        out -= 1
    return out


def same_size_alternative(free: set[str], size: int, student: list[object], reference: list[object]) -> str | None:
    """Accept a call that differs from the reference only in `free` arguments and gives the same output size."""
    mine, ref = the_call(student), the_call(reference)
    if not mine or not ref or mine[0] != ref[0] or mine[1].name != ref[1].name:
        return None
    mine_fixed, ref_fixed = ({k: v for k, v in call.args if k not in free} for call in (mine[1], ref[1]))
    expected = out_size(size, ref[1])
    if mine_fixed != ref_fixed or out_size(size, mine[1]) != expected:
        return None
    return f"accepted alternative: a {size}x{size} input still gives {expected}x{expected}, as in the reference"


def avgpool_alternative(student: list[object], reference: list[object]) -> str | None:
    """Accept AvgPool2d(2) with any stride, or AdaptiveAvgPool2d(1): on a 2x2 map all take the one average."""
    mine, ref = the_call(student), the_call(reference)
    if not mine or not ref or mine[0] != ref[0]:
        return None
    call = mine[1]
    if call.name == "AdaptiveAvgPool2d" and dict(call.args) == {"output_size": "1"}:
        return "accepted alternative: AdaptiveAvgPool2d(1) averages the whole map, like the reference"
    if call.name == "AvgPool2d" and same_size_alternative({"stride", "ceil_mode", "count_include_pad"}, 2,
                                                          student, reference):
        return "accepted alternative: on the 2x2 map every stride takes the one 2x2 window"
    return None


ALTERNATIVES = {
    "stem_conv": partial(same_size_alternative, {"padding"}, 32),
    "stem_pool": partial(same_size_alternative, {"padding", "ceil_mode"}, 16),
    "avgpool": avgpool_alternative,
}


def show(form: object) -> str:
    """A short text for a normal form, for the notes."""
    return f"{form.name}(...)" if isinstance(form, CallForm) else str(form)


def differences(student: list[object], reference: list[object], limit: int = 4) -> list[str]:
    """Notes on what differs between two answers in normal form, item by item."""
    notes = []
    if len(student) != len(reference):
        notes.append(f"{len(student)} item(s) where the reference has {len(reference)}")
    found: dict[tuple[str, str], list[int]] = {}  # (call name, what differs) -> the items where it does
    for i, (mine, ref) in enumerate(zip(student, reference), 1):
        if isinstance(mine, AssignForm) and isinstance(ref, AssignForm):
            if mine.targets != ref.targets:
                notes.append(f"assigns to {', '.join(mine.targets)}, the reference to {', '.join(ref.targets)}")
            mine, ref = mine.value, ref.value
        if isinstance(mine, CallForm) and isinstance(ref, CallForm) and mine.name == ref.name:
            mine_args, ref_args = dict(mine.args), dict(ref.args)
            for key in dict.fromkeys([k for k, _ in ref.args] + [k for k, _ in mine.args]):
                if mine_args.get(key) != ref_args.get(key):
                    what = (f"{key}={show(mine_args.get(key, '(none)'))}, "
                            f"the reference has {key}={show(ref_args.get(key, '(none)'))}")
                    found.setdefault((f" ({mine.name})", what), []).append(i)
        elif mine != ref:
            found.setdefault(("", f"{show(mine)} where the reference has {show(ref)}"), []).append(i)
    for (name, what), items in found.items():
        notes.append(f"item{'s' if len(items) > 1 else ''} {', '.join(map(str, items))}{name}: {what}")
    return notes[:limit] + ([f"... and {len(notes) - limit} more"] if len(notes) > limit else [])


def without_stride(calls: list[CallForm]) -> list[CallForm]:
    """The calls with their stride argument left out."""
    return [call._replace(args=tuple(arg for arg in call.args if arg[0] != "stride")) for call in calls]


def classic_mistakes(student: list[object], reference: list[object]) -> list[str]:
    """Notes that explain the classic mistakes: the stride on the 3x3, no padding on the 3x3."""
    if len(student) != len(reference) or not all(isinstance(f, CallForm) for f in student + reference):
        return []
    notes = []
    if (without_stride(student) == without_stride(reference)
            and [c.name for c in student if c.arg("stride") == "2"] == ["conv3x3"]
            and [c.name for c in reference if c.arg("stride") == "2"] == ["conv1x1"]):
        notes.append(STRIDE_NOTE)
    if any(mine.name == ref.name == "conv3x3" and (mine.arg("padding"), ref.arg("padding")) == ("0", "1")
           for mine, ref in zip(student, reference)):
        notes.append(PADDING_NOTE)
    return notes


@dataclass
class Reference:
    """The reference resnet.py: its text, its blanks and each answer in normal form."""
    text: str
    blanks: dict[str, Blank]
    as_items: dict[str, bool] = field(default_factory=dict)
    forms: dict[str, list[object]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = REFERENCE) -> Reference:
        """Read and check the reference file and the tests grading needs."""
        for needed in (path, *TEST_FILES):
            if not needed.is_file():
                raise UserError(f"{needed} is missing: grading needs the reference resnet.py and tests/test_resnet.py")
        ref = cls(path.read_text(encoding="utf-8"), {})
        ref.blanks = reference_blanks(ref.text)
        for blank in ref.blanks.values():
            if blank.id not in BLANK_TESTS:
                raise UserError(f"blank {blank.id} has no tests: add it to BLANK_TESTS in grade.py")
            try:  # an answer that parses as the items of a list sits inside nn.Sequential(...)
                ref.forms[blank.id] = [normal_form(n) for n in parse_answer(blank.lines, as_items=True)]
                ref.as_items[blank.id] = True
            except SyntaxError:
                ref.forms[blank.id] = [normal_form(n) for n in parse_answer(blank.lines, as_items=False)]
                ref.as_items[blank.id] = False
        return ref


def compare(ref: Reference, blank_id: str, answer: list[str]) -> tuple[str, list[str]]:
    """The verdict (same, equivalent, different, missing) on one answer, with notes."""
    ref_blank = ref.blanks[blank_id]
    tokens = code_tokens(answer)
    if not tokens or tokens == code_tokens(placeholder(ref_blank, "")):
        return "missing", ["no answer between the markers"]
    if tokens == code_tokens(ref_blank.lines):
        return "same", []
    try:
        forms = [normal_form(n) for n in parse_answer(answer, ref.as_items[blank_id])]
    except SyntaxError as error:
        line = (error.lineno or 1) - ref.as_items[blank_id]  # as items, the answer was parsed after a "[" line
        return "different", [f"does not parse: {error.msg} (line {line} of the answer)"]
    if forms == ref.forms[blank_id]:
        return "equivalent", ["the same code as the reference, written differently"]
    if blank_id in ALTERNATIVES and (note := ALTERNATIVES[blank_id](forms, ref.forms[blank_id])):
        return "equivalent", [note]
    return "different", classic_mistakes(forms, ref.forms[blank_id]) + differences(forms, ref.forms[blank_id])


# ------------------------------------------------------------------ running the tests in a sandbox

NO_NETWORK = '''"""Loaded at start-up of every Python process of the sandbox: no network."""
import socket


class _NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network use is blocked while grading")


socket.socket = socket.SocketType = _NoSocket
'''

RUNNER = r'''"""Runs inside the sandbox: import the submission, then run the per-layer tests on it."""
import importlib.util, json, os, resource, sys, traceback
from pathlib import Path

HERE = Path.cwd()
status = {"problem": None, "finished": []}


def save():
    (HERE / "status.json").write_text(json.dumps(status))


def describe(exc):
    """One line on why the import failed, with the line of the submission where it happened."""
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
        limit = resource.getrlimit(resource.RLIMIT_AS)[0] / 2**30
        return f"exceeded the memory limit ({limit:g} GB) while importing"
    if isinstance(exc, SystemExit):
        return f"did not import: it called sys.exit({exc.code!r})"
    if isinstance(exc, SyntaxError):
        return f"did not import: {type(exc).__name__} line {exc.lineno}: {exc.msg}"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(HERE / "resnet.py")]
    where = f" line {lines[-1]}" if lines else ""
    return f"did not import: {type(exc).__name__}{where}: {exc}"[:300]


class Only:
    """pytest plugin: run only the tests whose names start with the given prefixes."""

    def __init__(self, prefixes):
        self.prefixes = tuple(prefixes)

    def pytest_collection_modifyitems(self, items):
        items[:] = [item for item in items if item.name.startswith(self.prefixes)]


save()
try:
    spec = importlib.util.spec_from_file_location("submission", HERE / "resnet.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except BaseException as exc:
    status["problem"] = describe(exc)
else:
    import pytest
    for label, prefixes in json.loads(sys.argv[1]).items():  # label -> test-name prefixes, or null: all
        impl = HERE / ("resnet.py" if label == "submitted" else f"{label}/resnet.py")
        pytest.main([str(HERE / "tests" / "test_resnet.py"), "--impl", str(impl), "-q", "-p", "no:cacheprovider",
                     f"--junitxml={HERE / (label + '.xml')}", f"--rootdir={HERE}"],
                    plugins=[Only(prefixes)] if prefixes is not None else [])
        status["finished"].append(label)
        save()
save()
sys.stdout.flush()
os._exit(0)  # do not wait for threads the submission may have started
'''


class Outcome(NamedTuple):
    """One test's outcome: passed or not, and the first line of its failure message."""
    passed: bool
    message: str = ""


@dataclass
class RunResult:
    """What the sandbox found: a problem that stops grading, or test results per labelled file."""
    problem: str | None = None
    tests: dict[str, dict[str, Outcome]] = field(default_factory=dict)


def limit_memory(max_bytes: int) -> None:
    """Runs in the child before it starts: cap its address space."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def read_junit(path: Path) -> dict[str, Outcome]:
    """Test name -> result, from a pytest --junitxml report."""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        failure = next((child for child in case if child.tag in ("failure", "error")), None)
        if failure is None:
            results.setdefault(case.get("name"), Outcome(True))
        else:
            message = (failure.get("message") or failure.tag).strip().splitlines()[0]
            message = re.sub(r'^failed on (setup|teardown) with "(.*)"?$', r"\2", message).rstrip('"')
            results[case.get("name")] = Outcome(False, message[:200])
    return results


def run_tests(files: dict[str, str], only: dict[str, tuple[str, ...]], timeout: float, memory_gb: float) -> RunResult:
    """Run tests/test_resnet.py on each file (label -> text) in one sandboxed process.

    `only` limits the tests of a label to those whose names start with the given prefixes.
    """
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        sandbox = Path(tmp)
        (sandbox / "tests").mkdir()
        for test_file in TEST_FILES:
            shutil.copy(test_file, sandbox / "tests" / test_file.name)
        for label, text in files.items():
            path = sandbox / ("resnet.py" if label == "submitted" else f"{label}/resnet.py")
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (sandbox / "sitecustomize.py").write_text(NO_NETWORK)
        (sandbox / "run_tests.py").write_text(RUNNER)
        (sandbox / "pytest.ini").write_text("[pytest]\n")  # no settings from folders above
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
        env.update(PYTHONPATH=str(sandbox), PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(sandbox / "output.txt", "wb") as output:
            plan = json.dumps({label: only.get(label) for label in files})
            child = subprocess.Popen([sys.executable, "-s", "run_tests.py", plan], cwd=sandbox, env=env,
                                     stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=partial(limit_memory, int(memory_gb * 2**30)))
            try:
                child.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # the child leads its own process group: end it and all it started
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.wait()
        if timed_out:
            return RunResult(f"timed out after {timeout:g} s")
        status_file = sandbox / "status.json"
        status = json.loads(status_file.read_text()) if status_file.is_file() else {}
        if status.get("problem"):
            return RunResult(status["problem"])
        result = RunResult()
        for label in files:
            report = sandbox / f"{label}.xml"
            if label in status.get("finished", []) and report.is_file():
                result.tests[label] = read_junit(report)
            else:
                result.problem = crash_message(child.returncode, memory_gb, sandbox / "output.txt")
        return result


def crash_message(returncode: int, memory_gb: float, output: Path) -> str:
    """Why the child ended before its tests finished, as well as we can tell."""
    if returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exited with code {returncode}"
    last = output.read_bytes()[-2000:].decode(errors="replace").strip().splitlines()[-1:] if output.is_file() else []
    if "memory" in " ".join(last).lower() or returncode in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
        how += f" (perhaps the memory limit of {memory_gb:g} GB)"
    message = f"crashed: the test process {how} before the tests finished"
    return message + (f"; last output: {last[0][:150]}" if last else "")


# ------------------------------------------------------------------ grading

@dataclass
class BlankGrade:
    """The grade of one blank."""
    id: str
    max_points: int
    hint: str
    reference: list[str]
    answer: list[str] | None
    verdict: str
    notes: list[str]
    tests: dict[str, Outcome] = field(default_factory=dict)
    points: int = 0


@dataclass
class Grade:
    """The grade of one submission."""
    student: str
    path: Path
    blanks: list[BlankGrade]
    problem: str | None = None
    other_tests: dict[str, Outcome] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(b.points for b in self.blanks)

    @property
    def max_total(self) -> int:
        return sum(b.max_points for b in self.blanks)


def covering(tests: dict[str, Outcome], blank_id: str) -> dict[str, Outcome]:
    """The tests that cover a blank."""
    return {name: r for name, r in tests.items() if name.startswith(BLANK_TESTS[blank_id])}


def grade_file(path: Path, student: str, ref: Reference, timeout: float, memory_gb: float) -> Grade:
    """Grade one submission: verdicts from its text, test results from the sandbox, points from both."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as error:
        return Grade(student, path, [BlankGrade(b.id, b.points, b.hint, b.lines, None, "missing", [])
                                     for b in ref.blanks.values()],
                     problem=f"could not read the file: {error}")
    found, broken = find_blanks(text)
    blanks = []
    for b in ref.blanks.values():
        if b.id in found:
            verdict, notes = compare(ref, b.id, found[b.id].lines)
        else:
            verdict, notes = "missing", [broken.get(b.id, f"the marker lines BEGIN BLANK {b.id} / END BLANK {b.id} "
                                                          "were not found")]
        answer = found[b.id].lines if b.id in found else None
        blanks.append(BlankGrade(b.id, b.points, b.hint, b.lines, answer, verdict, notes))
    grade = Grade(student, path, blanks)
    try:
        compile(text, str(path), "exec")
    except SyntaxError as error:
        grade.problem = f"did not import: {type(error).__name__} line {error.lineno}: {error.msg}"
        return grade
    files, only, source = plan_test_runs(text, blanks)
    run = run_tests(files, only, timeout, memory_gb)
    grade.problem = run.problem
    if run.problem:
        return grade
    submitted = run.tests["submitted"]
    for b in blanks:
        b.tests = covering(run.tests[source[b.id]], b.id)
        if not b.tests:  # the tests could not even be collected, or were renamed (see BLANK_TESTS)
            errors = [r.message for r in run.tests[source[b.id]].values() if not r.passed]
            b.notes.append("no test result covers this blank: " + (errors[0] if errors else "see BLANK_TESTS"))
            continue
        passed = all(r.passed for r in b.tests.values())
        b.points = b.max_points if b.verdict in FULL_POINTS and passed else 0
        if b.verdict in FULL_POINTS and not passed:
            b.notes.append("the answer is right, but its tests fail: is something outside the blanks changed?")
        if b.verdict == "different" and passed:
            b.notes.append("its tests pass, but the code differs from the assignment's design")
    covered = {name for b in blanks for name in covering(submitted, b.id)}
    grade.other_tests = {name: r for name, r in submitted.items() if name not in covered}
    if any("MemoryError" in r.message or "allocate memory" in r.message for r in submitted.values()):
        grade.problem = f"exceeded the memory limit ({memory_gb:g} GB) during the tests"
    return grade


def plan_test_runs(text: str, blanks: list[BlankGrade]) -> tuple[dict[str, str], dict[str, tuple], dict[str, str]]:
    """The files to test (label -> text), the tests each needs, and the label whose results grade each blank.

    Each blank's tests run on the student's file with the student's OTHER wrong answers
    replaced by the reference ones, so that a mistake shows, and costs, only in its own blank.
    """
    wrong = {b.id: b.reference for b in blanks if b.verdict not in FULL_POINTS and b.answer is not None}
    right = [b.id for b in blanks if b.verdict in FULL_POINTS]
    files, only = {"submitted": text}, {}
    source = {b.id: "submitted" for b in blanks}
    if wrong and right:
        files["repaired"] = fill_blanks(text, wrong)
        only["repaired"] = tuple(p for blank_id in right for p in BLANK_TESTS[blank_id])
        source.update(dict.fromkeys(right, "repaired"))
    if len(wrong) > 1:
        for blank_id in wrong:
            label = f"only-{blank_id}"
            files[label] = fill_blanks(text, {other: lines for other, lines in wrong.items() if other != blank_id})
            only[label], source[blank_id] = BLANK_TESTS[blank_id], label
    return files, only, source


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, file) for each STUDENT.py and each STUDENT/resnet.py in a folder."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        path = entry / "resnet.py" if entry.is_dir() else entry
        if entry.is_dir() and not path.is_file() and not entry.name.startswith("."):
            print(f"warning: skipped {entry}: no resnet.py inside", file=sys.stderr)
        if path.is_file() and path.suffix == ".py" and not entry.name.startswith("."):
            name = entry.stem if entry.is_file() else entry.name
            if name in found:
                raise UserError(f"{folder}: two submissions for student {name}: {found[name]} and {path}")
            found[name] = path
    if not found:
        raise UserError(f"{folder} holds no submission: expected one STUDENT.py per student, "
                        f"or one folder per student with a resnet.py inside")
    return list(found.items())


# ------------------------------------------------------------------ reports

def report(grade: Grade) -> str:
    """The full text report of one submission: every blank, its tests, the points table."""
    out = [f"Submission: {grade.student} ({grade.path})"]
    if grade.problem:
        out.append(f"PROBLEM: {grade.problem}" + ("; every blank scores 0" if grade.total == 0 else ""))
    for b in grade.blanks:
        out += ["", f"[{b.id}] {b.verdict}: {b.points}/{b.max_points} points"]
        mine = textwrap.dedent("".join(b.answer or [])).splitlines()
        theirs = textwrap.dedent("".join(b.reference)).splitlines()
        if b.verdict == "same":
            out += labelled("answer", mine)
        else:
            out += labelled("hint", [b.hint])
            out += labelled("yours", mine or ["(nothing)"]) + labelled("reference", theirs)
        out += labelled("note", b.notes)
        out += labelled("tests", outcome_lines(b.tests))
    if grade.other_tests:
        failed = [f"FAIL {name}: {r.message}" for name, r in grade.other_tests.items() if not r.passed]
        out += ["", f"Other tests (no points): {len(grade.other_tests) - len(failed)}/{len(grade.other_tests)} passed"]
        out += ["  " + line for line in failed]
    out += ["", f"{'blank':<18}{'verdict':<12}{'tests':<9}{'points':>7}"]
    for b in grade.blanks:
        tests = f"{sum(r.passed for r in b.tests.values())}/{len(b.tests)}" if b.tests else "-"
        out.append(f"{b.id:<18}{b.verdict:<12}{tests:<9}{f'{b.points}/{b.max_points}':>7}")
    out.append(f"Total: {grade.total}/{grade.max_total}")
    return "\n".join(out) + "\n"


def outcome_lines(tests: dict[str, Outcome]) -> list[str]:
    """`all 3 passed`, or one line per test when some failed."""
    if not tests:
        return ["not run"]
    if all(r.passed for r in tests.values()):
        return [f"{'all %d ' % len(tests) if len(tests) > 1 else ''}passed: {', '.join(tests)}"]
    return [f"{'pass' if r.passed else 'FAIL'} {name}" + (f": {r.message}" if r.message else "")
            for name, r in tests.items()]


def labelled(label: str, lines: list[str]) -> list[str]:
    """Lines indented under a label in the first column: `  label      line`."""
    return [f"  {label if i == 0 else '':<10} {line}" for i, line in enumerate(lines)]


def summary(grade: Grade) -> str:
    """One short line on what cost points, for the CSV and the batch listing."""
    lost = [f"{b.id}: {b.verdict}" + (f" ({b.notes[0]})" if b.notes else "")
            for b in grade.blanks if b.points < b.max_points and not grade.problem]
    return "; ".join(([grade.problem] if grade.problem else []) + lost)


def gradescope(grade: Grade) -> dict:
    """The Gradescope results.json object of one submission."""
    tests = []
    for b in grade.blanks:
        lines = [f"verdict: {b.verdict}", *[f"note: {n}" for n in b.notes]]
        lines += [f"tests: {line}" for line in outcome_lines(b.tests)]
        tests.append({"name": b.id, "score": b.points, "max_score": b.max_points, "output": "\n".join(lines)})
    return {"score": grade.total, "output": grade.problem or "", "tests": tests}


def csv_text(grades: list[Grade]) -> str:
    """The CSV: student, points per blank, total, notes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *[b.id for b in grades[0].blanks], "total", "notes"])
    for grade in grades:
        writer.writerow([grade.student, *[b.points for b in grade.blanks], grade.total, summary(grade)])
    return buffer.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary file and os.replace: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------ command line

class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one `error: ...` paragraph (see main)."""

    def error(self, message: str):
        raise UserError(f"{message} (see `python {self.prog} --help`)")


def positive(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got '{text}'")
    return value


def refuse_to_overwrite(path: Path, protected: list[Path], what: str) -> None:
    """Stop if an output path is a file we must not overwrite (the reference, a submission)."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder: give a file name")
    for keep in protected:
        if path.resolve() == keep.resolve() or (path.exists() and keep.exists() and path.samefile(keep)):
            raise UserError(f"{what} {path} would overwrite {keep}: choose another file")


def cmd_skeleton(args: argparse.Namespace) -> None:
    """Write the student skeleton."""
    output = Path(args.output)
    refuse_to_overwrite(output, [REFERENCE], "-o")
    ref = Reference.load()
    write_atomic(output, make_skeleton(ref.text))
    points = sum(b.points for b in ref.blanks.values())
    print(f"wrote {output}: {len(ref.blanks)} blanks, {points} points")


def cmd_check(args: argparse.Namespace) -> None:
    """Grade one file (full report) or a folder of submissions (one line each)."""
    target = Path(args.path)
    if not target.exists():
        raise UserError(f"{target}: no such file or folder")
    submissions = find_submissions(target) if target.is_dir() else [(target.stem, target)]
    outputs = [Path(p) for p in (args.csv, args.json) if p]
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise UserError("--csv and --json name the same file")
    for output in outputs:
        refuse_to_overwrite(output, [REFERENCE, *TEST_FILES, *[p for _, p in submissions]], "output")
    ref = Reference.load()
    grades = []
    for student, path in submissions:
        grade = grade_file(path, student, ref, args.timeout, args.memory_gb)
        grades.append(grade)
        if target.is_dir() and not args.details:
            print(f"{student:<20} {grade.total:>3}/{grade.max_total}  {summary(grade)}".rstrip(), flush=True)
        else:
            print(report(grade), flush=True)
    if args.csv:
        write_atomic(Path(args.csv), csv_text(grades))
        print(f"wrote {args.csv}")
    if args.json:
        results = {g.student: gradescope(g) for g in grades} if target.is_dir() else gradescope(grades[0])
        write_atomic(Path(args.json), json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


def build_parser() -> Parser:
    """The command-line interface."""
    parser = Parser(prog="grade.py", description="Grading tools for the ResNet-50 assignment: make the student "
                    "skeleton from resnet.py, grade submissions against it.",
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=textwrap.dedent("""\
                        examples:
                          python grade.py skeleton                      write student/resnet.py
                          python grade.py check alice.py                full report for one file
                          python grade.py check submissions/ --csv grades.csv --json results.json

                        `python grade.py COMMAND --help` explains each command's options.
                        How verdicts and points work: the docstring at the top of grade.py."""))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    skeleton = commands.add_parser("skeleton", help="write the student version of resnet.py (answers removed)",
                                   description="Write resnet.py with every answer replaced by a hint and a "
                                   "'fill in here' placeholder. The marker lines stay, for grading.")
    skeleton.add_argument("-o", "--output", default="student/resnet.py", metavar="FILE",
                          help="where to write the skeleton (default: student/resnet.py); never resnet.py itself")
    skeleton.set_defaults(run=cmd_skeleton)
    check = commands.add_parser("check", help="grade one submission, or a folder of them",
                                description="Grade each blank: the verdict on the answer (same, equivalent, "
                                "different, missing) and the per-layer tests that cover it. A blank scores its "
                                "points if the answer is same or equivalent and its tests pass.")
    check.add_argument("path", metavar="PATH", help="a student's resnet.py, or a folder with one STUDENT.py per "
                       "student or one STUDENT/ folder with a resnet.py per student")
    check.add_argument("--csv", metavar="FILE", help="write a CSV: student, points per blank, total, notes")
    check.add_argument("--json", metavar="FILE", help="write Gradescope results: one object for a file, "
                       "a dict of objects keyed by student for a folder")
    check.add_argument("--timeout", type=positive, default=60, metavar="SECONDS",
                       help="time limit per submission, import and tests together (default: 60)")
    check.add_argument("--memory-gb", type=positive, default=4, metavar="GB",
                       help="address-space limit per submission; torch alone needs about 3.4 (default: 4)")
    check.add_argument("--details", action="store_true",
                       help="for a folder, print every student's full report instead of one line each")
    check.set_defaults(run=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user error becomes `error: ...` on stderr and exit code 2."""
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        print(f"error: {error.filename}: {error.strerror}" if error.filename else f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
