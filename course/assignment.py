"""The assignment's facts, one source for check.py and the grader: the blanks and their markers, when a blank
counts as untouched, the sizes the layer tests check, and the probes that build each blank's module.

Standard library only: students get this file with check.py, and the grader's own process never imports torch.
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass

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
