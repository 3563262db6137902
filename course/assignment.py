"""The assignment's facts, one source for check.py and the grader: the blanks and their markers, when a blank
counts as untouched, how a student's file is read, the sizes the layer tests check, and the probes that build
each blank's module.

Standard library only: students get this file with check.py, and the grader's own process never imports torch.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from course.cli import UserError

# ------------------------------------------------ the blanks, each between two marker lines:
#     # BEGIN BLANK <id> points=<n> hint="<hint>"
#     ...the answer...
#     # END BLANK <id>
BLANKS = ("stem_conv", "stem_pool", "block_downsample", "block_same", "layer2", "layer3", "layer4", "avgpool", "fc")
BLOCKS = ("block_downsample", "block_same")  # ResidualBlock's blanks: checked on their own, with the probes below
# Loose about spacing and about points= and hint=, so that a student's reformatted marker still counts (the
# grader asks more of the reference's, grading/markers.py).
BEGIN = re.compile(r'^\s*#\s*BEGIN BLANK\s+(?P<id>\w+)(?:.*?\bpoints=(?P<points>\d+))?(?:.*?\bhint="(?P<hint>[^"]*)")?')
END = re.compile(r"^\s*#\s*END BLANK\s+(?P<id>\w+)\s*$")


@dataclass
class Blank:
    """One blank of a file: its marker lines (0-based indices), the answer lines between them, points and hint."""
    id: str
    begin: int
    end: int
    lines: list[str]
    points: int | None = None
    hint: str | None = None


def find_blanks(text: str) -> tuple[dict[str, Blank], dict[str, str]]:
    """The blanks of a file, and what is wrong with the markers of each blank left out (nested, repeated, unclosed)."""
    lines = text.splitlines(keepends=True)
    blanks: dict[str, Blank] = {}
    problems: dict[str, str] = {}
    begin, at = None, 0  # the BEGIN line of the blank being read, and its index
    for i, line in enumerate(lines):
        if match := BEGIN.match(line):
            if begin:
                problems[begin["id"]] = f"BEGIN BLANK {match['id']} (line {i + 1}) comes before END BLANK {begin['id']}"
            begin, at = match, i
            if begin["id"] in blanks or begin["id"] in problems:
                problems[begin["id"]] = f"the markers of blank {begin['id']} appear more than once"
        elif end := END.match(line):
            if not begin or end["id"] != begin["id"]:
                problems.setdefault(end["id"], f"END BLANK {end['id']} (line {i + 1}) has no BEGIN BLANK before it")
            elif end["id"] not in problems:
                points = int(begin["points"]) if begin["points"] else None
                blanks[end["id"]] = Blank(end["id"], at, i, lines[at + 1:i], points, begin["hint"])
            begin = None
    if begin:
        problems.setdefault(begin["id"], f"BEGIN BLANK {begin['id']} (line {at + 1}) has no END BLANK line")
    return {b: blank for b, blank in blanks.items() if b not in problems}, problems


def blank_at(blanks: dict[str, Blank], lines: list[str], hits: list[int]) -> str | None:
    """The first blank that one of the `hits` (line numbers an error went through) points to: the blank whose answer
    holds the line, else the one blank inside the statement that holds it."""
    answers = {b: (m.begin + 2, m.end) for b, m in blanks.items() if b in BLANKS}  # 1-based, inclusive
    statements = [n for n in ast.walk(ast.parse("".join(lines))) if isinstance(n, ast.stmt)]
    for line in hits:
        inside = [b for b, (first, last) in answers.items() if first <= line <= last]
        around = [n for n in statements if n.lineno <= line <= n.end_lineno]
        if not inside and around:
            stmt = min(around, key=lambda n: n.end_lineno - n.lineno)
            inside = [b for b, (first, last) in answers.items() if stmt.lineno <= first and last <= stmt.end_lineno]
        if len(inside) == 1:
            return inside[0]
    return None


def untouched(lines: list[str]) -> bool:
    """Whether a blank's answer is still the skeleton's: nothing but comments, or only `x = None`."""
    code = [c for c in (re.sub(r"#.*", "", line).strip() for line in lines) if c]
    return not code or (len(code) == 1 and re.fullmatch(r"[\w.]+\s*=\s*None", code[0]) is not None)


def decode_source(data: bytes, name: str) -> str:
    """A Python file's bytes as text, decoded as Python decodes them (UTF-8, a byte-order mark, or what a `# coding:`
    line names); what Python cannot read is a UserError that names the line and says how to fix it."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        if "unknown encoding" in str(error):
            raise UserError(f"{name}: Python cannot read it ({error}): fix its `# coding:` line (or remove it: "
                            "UTF-8 needs none).") from None
        encoding = "utf-8"  # bytes that are not UTF-8 in the first two lines: said with their line below
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError(f"{name}, line {line}: byte 0x{data[error.start]:02x} is not {error.encoding} text: Python "
                        "cannot read it. Save it as UTF-8 (the editor's 'save with encoding').") from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise UserError(f"{name}, line {line}: a NUL (zero) byte, which Python cannot read: save the file again "
                        "as plain text.")
    return text.removeprefix("\ufeff")


# ------------------------------------------------ a student's file, and its errors in plain words

def read_student_file(path: Path) -> list[str]:
    """The file's lines, decoded as Python decodes it (UTF-8, or what a `# coding:` line names); else a UserError."""
    if path.is_dir():
        raise UserError(f"{path} is a folder: give the path of your resnet.py inside it, e.g. {path / 'resnet.py'}")
    if not path.is_file():
        raise UserError(f"{path}: no such file (give the path of your resnet.py)")
    if path.suffix == ".ipynb":
        raise UserError(f"{path} is a Jupyter notebook; check.py reads a Python file. Save the notebook as one "
                        "(Jupyter: File > Download as > Python (.py)), or copy your cells into resnet.py, and run "
                        "check.py on that file.")
    data = path.read_bytes()
    if not data.strip():
        raise UserError(f"{path} is empty: nothing was checked. Give the path of your resnet.py, the file with "
                        "the BEGIN/END BLANK lines.")
    try:
        return decode_source(data, str(path)).splitlines(keepends=True)
    except UserError as error:
        raise UserError(f"{error}\nNothing was checked: fix that and run check.py again.") from None


def run_student_file(path: Path, lines: list[str]) -> types.ModuleType:
    """Run the file's text as a fresh module (line numbers stay those of the file)."""
    module = types.ModuleType("student_resnet")
    module.__file__ = str(path)
    exec(compile("".join(lines), str(path), "exec"), module.__dict__)  # noqa: S102 - running it is the point
    return module


def import_student_file(path: Path) -> tuple[list[str], types.ModuleType]:
    """Read and import a student's file; a file Python cannot read or import is a UserError that says why."""
    lines = read_student_file(path)
    try:
        return lines, run_student_file(path, lines)
    except SyntaxError as error:
        where = f", line {error.lineno}" if error.lineno else ""
        raise UserError(f"{path}{where}: {type(error).__name__}: {error.msg}.\nPython cannot read "
                        "your file, so nothing was checked: fix that line (or the one just before it) and run "
                        "check.py again.") from None
    except Exception as error:  # noqa: BLE001 - whatever the file raises, say it in plain words
        raise UserError(f"{path}: importing your file raised {plain(error, path)}.\nNothing was checked: fix "
                        "that first and run check.py again.") from None


def traceback_lines(error: BaseException, path: Path) -> list[int]:
    """The lines of the student's file that the error went through, innermost first."""
    frames = reversed(traceback.extract_tb(error.__traceback__))
    return [frame.lineno for frame in frames if frame.filename == str(path)]


def plain(error: BaseException, path: Path) -> str:
    """An exception in plain words: `RuntimeError: <first line> (line 58 of your file)`."""
    message = (str(error).strip().splitlines() or [""])[0][:200]
    lines = traceback_lines(error, path)
    return f"{type(error).__name__}: {message}" + (f" (line {lines[0]} of your file)" if lines else "")


# ------------------------------------------------ the hints check.py gives with a failure, no more than the skeleton's
CHANNELS = ("check the channel counts of your conv1x1/conv3x3 calls: which of in_channels, middle_channels and "
            "out_channels each one takes and gives")
SPATIAL = "check the stride and padding of your convolutions"
CALLS = "check your ResidualBlock(in_channels, middle_channels, out_channels, downsample) calls"
HINTS = {"stem_conv": "look at your nn.Conv2d (the hint: 7x7 conv, 3 -> 64 channels; it halves the image size)",
         "stem_pool": "look at your nn.MaxPool2d (the hint: a 3x3 max-pool that halves the image size again)",
         "block_downsample": CHANNELS, "block_same": CHANNELS, "layer2": CALLS, "layer3": CALLS, "layer4": CALLS,
         "avgpool": "look at your pooling layer: it averages the whole 2x2 map",
         "fc": "look at your nn.Linear: from the pooled features (what avgpool gives) to the classes"}
SIZE_ERRORS = re.compile(r"non-singleton dimension [23]|[Kk]ernel size can't be greater|[Oo]utput size is too small")
NOT_DONE = "not done yet (fill in the code between the BEGIN/END BLANK {} lines)"


# ------------------------------------------------ the sizes (those of tests/test_resnet.py), for one image
INPUT = (3, 32, 32)  # one CIFAR-10 image
STEM_CONV = (64, 16, 16)  # after layer1's 7x7 convolution, before its max-pool
LAYER_SHAPES = {"layer1": (64, 8, 8), "layer2": (256, 4, 4), "layer3": (512, 2, 2), "layer4": (1024, 2, 2),
                "avgpool": (1024, 1, 1)}
NUM_CLASSES = 10  # fc gives one logit per class
STAGES = {  # number of blocks, in, middle and out channels, and whether the LAST block halves H and W
    "layer2": (3, 64, 64, 256, True),
    "layer3": (4, 256, 128, 512, True),
    "layer4": (6, 512, 256, 1024, False),
}
PARTS = {"layer1": ("stem_conv", "stem_pool"), "layer2": ("layer2",), "layer3": ("layer3",), "layer4": ("layer4",),
         "avgpool": ("avgpool",), "fc": ("fc",)}  # the model's parts, in order -> the blanks that build each
# what each part takes: what the part before it gives (fc: the pooled features, flattened)
PART_INPUTS = dict(zip(PARTS, [INPUT, *LAYER_SHAPES.values()], strict=True)) | {"fc": LAYER_SHAPES["avgpool"][:1]}
STEM_PARAMETERS = 3 * 64 * 7 * 7 + 64  # layer1's convolution: weights and bias
PARAMETERS = 14_750_730  # the whole model, for 10 classes


def size_text(shape) -> str:
    """(64, 8, 8), or a batch of that shape -> '64 x 8 x 8'."""
    return " x ".join(str(n) for n in (shape.shape[1:] if hasattr(shape, "shape") else shape))


def block_parameters(in_channels: int, middle: int, out: int) -> int:
    """Parameters of a bottleneck block: three conv + batch-norm pairs and a 1x1 projection shortcut."""
    def conv(c_in: int, c_out: int, kernel: int) -> int:
        return c_in * c_out * kernel * kernel + c_out + 2 * c_out  # weights, bias, batch-norm's scale and shift
    return conv(in_channels, middle, 1) + conv(middle, middle, 3) + conv(middle, out, 1) + conv(in_channels, out, 1)


def part_parameters() -> dict[str, int]:
    """The parameters of each part of ResNet50(10) (a batch-norm has 2 per channel); they add up to PARAMETERS."""
    parts = {"layer1": STEM_PARAMETERS + 2 * STEM_CONV[0]}
    for layer, (blocks, first_in, middle, out, _) in STAGES.items():
        parts[layer] = sum(block_parameters(first_in if i == 0 else out, middle, out) for i in range(blocks))
    return parts | {"avgpool": 0, "fc": LAYER_SHAPES["avgpool"][0] * NUM_CLASSES + NUM_CLASSES}


# ------------------------------------------------ the probes: what check.py and the grader build to test each blank
# A probe is (class, constructor arguments, attribute or "", input shape with a batch of 2). The blocks are probed
# with channel widths that occur nowhere in ResNet-50 (NETWORK_WIDTHS), so that a number written where a name
# belongs shows; block_same also with equal in and out channels, so that a shortcut that skips its projection
# when the widths match shows.
BLOCK, MODEL = "ResidualBlock", "ResNet50"
NETWORK_WIDTHS = {3, 10, 64, 128, 256, 512, 1024}
PROBES: dict[str, list[tuple[str, tuple, str, tuple[int, ...]]]] = {
    "block_downsample": [(BLOCK, (12, 4, 20, True), "", (2, 12, 6, 6)),
                         (BLOCK, (20, 6, 20, True), "", (2, 20, 5, 5)),
                         (BLOCK, (28, 14, 36, True), "", (2, 28, 7, 7))],
    "block_same": [(BLOCK, (12, 4, 20, False), "", (2, 12, 5, 5)),
                   (BLOCK, (20, 6, 20, False), "", (2, 20, 6, 6)),
                   (BLOCK, (36, 14, 28, False), "", (2, 36, 7, 7))],
    **{blank: [(MODEL, (NUM_CLASSES,), part, (2, *PART_INPUTS[part]))] for part, blanks in PARTS.items()
       for blank in blanks},
}
PROBES["fc"].append((MODEL, (7,), "fc", (2, *PART_INPUTS["fc"])))  # another number of classes: num_classes is used


def label(probe: tuple) -> str:
    """`ResidualBlock(12, 4, 20, True)` or `ResNet50(10).layer1`, for messages and notes."""
    cls, args, attribute, _ = probe
    return f"{cls}({', '.join(map(str, args))})" + (f".{attribute}" if attribute else "")
