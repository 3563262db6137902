#!/usr/bin/env python3
"""Self-check for the ResNet-50 assignment:  python check.py [student/resnet.py]

Runs the assignment's layer checks on YOUR file and prints one line per blank (the code between
`# BEGIN BLANK <id>` and `# END BLANK <id>`): pass, not done yet, or what is wrong and where to look.
Each blank is checked on its own, so one mistake shows only in its own line. This script imports only
the file you give it; the sizes it expects, and the channel widths it builds each block with (the grader's,
none of them the network's), are the assignment's (course/assignment.py). No message says more than the hint.
"""
from __future__ import annotations

import argparse
import ast
import re
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from course import assignment as spec
from course.cli import UserError, run_cli

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


class Fail(Exception):
    """A failed check; its message says what is wrong, in the assignment's terms."""


@dataclass
class Student:
    """The student's file, its blanks, its module, and the ResNet50s (10 and 3 classes) the checks look into."""
    path: Path
    lines: list[str]
    blanks: dict[str, spec.Blank]
    module: types.ModuleType
    models: tuple[nn.Module, nn.Module] | None = None


# ------------------------------------------------ reading and importing the file; errors in plain words

def read_lines(path: Path) -> list[str]:
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
        return spec.decode_source(data, str(path)).splitlines(keepends=True)
    except UserError as error:
        raise UserError(f"{error}\nNothing was checked: fix that and run check.py again.") from None


def load(path: Path, lines: list[str]) -> types.ModuleType:
    """Run the file's text as a fresh module (line numbers stay those of the file)."""
    module = types.ModuleType("student_resnet")
    module.__file__ = str(path)
    exec(compile("".join(lines), str(path), "exec"), module.__dict__)  # noqa: S102 - running it is the point
    return module


def import_student(path: Path) -> Student:
    """Read and import the student's file; a file Python cannot import is a UserError (exit code 2)."""
    lines = read_lines(path)
    try:
        return Student(path, lines, spec.find_blanks("".join(lines))[0], load(path, lines))
    except SyntaxError as error:
        where = f", line {error.lineno}" if error.lineno else ""
        raise UserError(f"{path}{where}: {type(error).__name__}: {error.msg}.\nPython cannot read "
                        "your file, so nothing was checked: fix that line (or the one just before it) and run "
                        "check.py again.") from None
    except Exception as error:  # noqa: BLE001 - whatever the file raises, say it in plain words
        raise UserError(f"{path}: importing your file raised {plain(error, path)}.\nNothing was checked: fix "
                        "that first and run check.py again.") from None


def student_lines(error: BaseException, path: Path) -> list[int]:
    """The lines of the student's file that the error went through, innermost first."""
    frames = reversed(traceback.extract_tb(error.__traceback__))
    return [frame.lineno for frame in frames if frame.filename == str(path)]


def plain(error: BaseException, path: Path) -> str:
    """An exception in plain words: `RuntimeError: <first line> (line 58 of your file)`."""
    message = (str(error).strip().splitlines() or [""])[0][:200]
    lines = student_lines(error, path)
    return f"{type(error).__name__}: {message}" + (f" (line {lines[0]} of your file)" if lines else "")


@contextmanager
def doing(what: str, blank: str, student: Student):
    """Turn any exception inside the block into a Fail that says what was being done, and what to look at."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - whatever the student's code raises
        look = SPATIAL if blank in spec.BLOCKS and SIZE_ERRORS.search(str(error)) else HINTS.get(blank)
        raise Fail(f"{what} raised {plain(error, student.path)}" + (f" - {look}" if look else "")) from None


def run_part(student: Student, blank: str, what: str, module: nn.Module, shape: tuple) -> tuple[torch.Tensor, ...]:
    """A random batch of 2 inputs of this shape, and the module's output for it (an error is a Fail)."""
    x = torch.randn(2, *shape)
    with doing(f"running {what} on a {fmt(shape)} input", blank, student):
        return x, module(x)


def fmt(shape: tuple | torch.Tensor) -> str:
    """(64, 8, 8), or a batch of that shape -> '64 x 8 x 8'."""
    return " x ".join(str(n) for n in (shape.shape[1:] if isinstance(shape, torch.Tensor) else shape))


def count(module: nn.Module) -> int:
    """The number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------ the checks, one per blank

def check_block(student: Student, blank: str) -> None:
    """ResidualBlock, once per probe: its branch's size, its 1x1 -> 3x3 -> 1x1 convolutions, its parameters."""
    for _, (c_in, middle, out, down), _, (_, _, size, _) in spec.PROBES[blank]:
        name = f"ResidualBlock(in={c_in}, middle={middle}, out={out}, downsample={down})"
        with doing(f"building {name}", blank, student):
            block = student.module.ResidualBlock(c_in, middle, out, downsample=down)
        branch = getattr(block, "layer", None)
        if not isinstance(branch, nn.Module) or not list(branch.children()):
            raise Fail(NOT_DONE.format(blank))
        _, y = run_part(student, blank, f"the branch (self.layer) of {name}", branch, (c_in, size, size))
        side = (size + 1) // 2 if down else size  # a stride-2 1x1 convolution gives ceil(size / 2)
        if y.dim() != 4 or y.shape[1] != out:
            raise Fail(f"the branch of {name} gives {fmt(y)}, expected {out} channels (out_channels): {CHANNELS}")
        if y.shape[2:] != (side, side):
            what = "it should halve H and W, once" if down else "H and W should stay the same"
            raise Fail(f"the branch of {name} turns {size} x {size} into {fmt(y.shape[2:])}: {what}: {SPATIAL}")
        convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
        if [c.kernel_size for c in convs] != [(1, 1), (3, 3), (1, 1)]:
            got = " -> ".join("x".join(map(str, c.kernel_size)) for c in convs)
            raise Fail(f"the block's branch should be 1x1 -> 3x3 -> 1x1 convolutions, yours is {got}")
        if down and convs[0].stride != (2, 2):
            raise Fail("the first 1x1 convolution should halve H and W (the other two keep them)")
        if count(block) != (want := spec.block_parameters(c_in, middle, out)):
            raise Fail(f"{name} has {count(block):,} parameters, expected {want:,}: {CHANNELS}")
        run_part(student, blank, name, block, (c_in, size, size))


def layer1_part(student: Student, blank: str) -> nn.Sequential:
    """The modules of layer1 that come from one blank: those before its BatchNorm2d, or after the ReLU."""
    items = list(student.models[0].layer1)
    norm = next((i for i, m in enumerate(items) if isinstance(m, nn.BatchNorm2d)), None)
    if norm is None:
        raise Fail("layer1 should keep its BatchNorm2d(64) and ReLU lines between the two blanks")
    part = nn.Sequential(*(items[:norm] if blank == "stem_conv" else items[norm + 2:]))
    if len(part) == 0:
        raise Fail(NOT_DONE.format(blank))
    return part


def check_stem_conv(student: Student, blank: str) -> None:
    """layer1's convolution: one 7x7 kernel, and a 3 x 32 x 32 image becomes 64 x 16 x 16."""
    stem = layer1_part(student, blank)
    _, y = run_part(student, blank, "layer1's convolution", stem, spec.INPUT)
    if y.shape[1:] != spec.STEM_CONV:
        look = "stride and padding: (32 + 2*padding - 7) // stride + 1"
        look = "out_channels" if y.shape[1] != spec.STEM_CONV[0] else look
        raise Fail(f"layer1's convolution gives {fmt(y)}, expected {fmt(spec.STEM_CONV)}: check {look}")
    kernels = ["x".join(map(str, m.kernel_size)) for m in stem.modules() if isinstance(m, nn.Conv2d)]
    if kernels != ["7x7"]:
        raise Fail(f"the stem should be one 7x7 convolution, yours: {' + '.join(kernels)}")
    if count(stem) != spec.STEM_PARAMETERS:
        raise Fail(f"layer1's convolution has {count(stem):,} parameters, expected {spec.STEM_PARAMETERS:,}: "
                   f"{HINTS['stem_conv']}")


def check_stem_pool(student: Student, blank: str) -> None:
    """The end of layer1: a 3x3 max-pool that turns the 64 x 16 x 16 of the convolution into 64 x 8 x 8."""
    pool = layer1_part(student, blank)
    _, y = run_part(student, blank, "the end of layer1", pool, spec.STEM_CONV)
    if y.shape[1:] != (want := spec.LAYER_SHAPES["layer1"]):
        raise Fail(f"layer1: expected {fmt(want)}, got {fmt(y)}: is the max-pool there, and does it halve H and W?")
    windows = [m.kernel_size for m in pool.modules() if isinstance(m, nn.MaxPool2d)]
    if [tuple(w) if isinstance(w, (list, tuple)) else (w, w) for w in windows] != [(3, 3)]:  # 3, (3, 3) or [3, 3]
        raise Fail("layer1 has the right size, but it should end with one 3x3 max-pool (nn.MaxPool2d)")


class Recorder(nn.Module):
    """Stands in for your ResidualBlock while the model is built: it only records its arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args, self.kwargs = args, kwargs


def block_args(in_channels, middle_channels, out_channels, downsample=False) -> tuple:
    """The arguments of a ResidualBlock call, read with ResidualBlock's own signature."""
    return in_channels, middle_channels, out_channels, bool(downsample)


def check_layer(student: Student, layer: str) -> None:
    """layer2/3/4: the number of blocks, and each block's channels and downsampling (the calls Recorder saw)."""
    blocks, first_in, middle, out, last_down = spec.STAGES[layer]
    items = list(getattr(student.models[0], layer))
    if not items:
        raise Fail(NOT_DONE.format(layer))
    if len(items) != blocks:
        raise Fail(f"{layer}: {len(items)} blocks, expected {blocks}")
    if len({id(m) for m in items}) < blocks:
        raise Fail(f"{layer}: the same block object is there more than once (its weights would be shared): "
                   "make a new ResidualBlock for each")
    previous = list(spec.PARTS)[list(spec.PARTS).index(layer) - 1]
    for i, block in enumerate(items, 1):
        try:
            c_in, c_middle, c_out, down = block_args(*block.args, **block.kwargs)
        except TypeError as error:
            raise Fail(f"{layer}, block {i}: {str(error).replace('block_args()', 'ResidualBlock()')}") from None
        if c_in != (first_in if i == 1 else out):
            source = f"{previous} gives {first_in}" if i == 1 else f"block {i - 1} gives {out}"
            raise Fail(f"{layer}, block {i} takes {c_in} channels in, but {source}: {CALLS}")
        if c_middle != middle:
            raise Fail(f"{layer}, block {i}: middle {c_middle}; the hint says middle {middle}")
        if c_out != out:
            raise Fail(f"{layer}, block {i}: out {c_out}; the hint says out {out}")
        if down != (last_down and i == blocks):
            hint = "only the last one downsamples" if last_down else "none downsamples"
            raise Fail(f"{layer}, block {i} {'halves' if down else 'keeps'} H and W; the hint says {hint}")


def check_avgpool(student: Student, blank: str) -> None:
    """avgpool averages each 1024 x 2 x 2 map into 1024 x 1 x 1."""
    if getattr(student.models[0], "avgpool", None) is None:
        raise Fail(NOT_DONE.format(blank))
    x, y = run_part(student, blank, "avgpool", student.models[0].avgpool, spec.PART_INPUTS["avgpool"])
    if y.shape[1:] != (want := spec.LAYER_SHAPES["avgpool"]):
        raise Fail(f"avgpool: expected {fmt(want)}, got {fmt(y)}: {HINTS['avgpool']}")
    if not torch.allclose(y.flatten(1), x.mean((2, 3)), atol=1e-5):
        raise Fail("avgpool has the right size, but it is not the average of the 2 x 2 map (a max-pool?)")


def check_fc(student: Student, blank: str) -> None:
    """fc turns the 1024 pooled features into num_classes logits."""
    model, model3 = student.models
    if getattr(model, "fc", None) is None:
        raise Fail(NOT_DONE.format(blank))
    with doing("running fc on the pooled features (what avgpool gives, flattened)", blank, student):
        y, y3 = (m.fc(torch.randn(2, *spec.PART_INPUTS["fc"])) for m in (model, model3))
    if y.shape[1:] != (spec.NUM_CLASSES,):
        raise Fail(f"fc: expected {spec.NUM_CLASSES} logits per image, got {fmt(y)}: {HINTS['fc']}")
    if y3.shape[1:] != (3,):
        raise Fail(f"fc: ResNet50(num_classes=3) gives {fmt(y3)} logits, expected 3: use num_classes, not 10")
    if count(model.fc) != (want := spec.part_parameters()["fc"]):
        raise Fail(f"fc has {count(model.fc):,} parameters, expected {want:,}: {HINTS['fc']}")


CHECKS = {"stem_conv": check_stem_conv, "stem_pool": check_stem_pool, "block_downsample": check_block,
          "block_same": check_block, "layer2": check_layer, "layer3": check_layer, "layer4": check_layer,
          "avgpool": check_avgpool, "fc": check_fc}


# ------------------------------------------------ running them

def build_models(student: Student, results: dict[str, str]) -> None:
    """ResNet50 for 10 and 3 classes, each ResidualBlock only recorded; a blank that breaks the build is set aside."""
    lines = list(student.lines)
    for _ in range(len(spec.BLANKS) + 1):  # each round sets one more blank aside
        module = load(student.path, lines)
        module.ResidualBlock = Recorder
        try:
            student.models = module.ResNet50(num_classes=spec.NUM_CLASSES), module.ResNet50(num_classes=3)
            return
        except Exception as error:  # noqa: BLE001 - whatever the student's code raises
            message = f"building ResNet50() raised {plain(error, student.path)}"
            blank = next(filter(None, (blank_at(student, line) for line in student_lines(error, student.path))), None)
            if blank is None or blank in results:
                raise Fail(message) from None
            results[blank] = f"{message} - {HINTS[blank]}"
            b = student.blanks[blank]
            lines[b.begin + 1:b.end] = ["#\n"] * len(b.lines)  # set aside, same line numbers


def blank_at(student: Student, line: int) -> str | None:
    """The blank whose answer holds this line, else the one blank inside the statement that holds it."""
    answers = {b: (m.begin + 2, m.end) for b, m in student.blanks.items() if b in spec.BLANKS}  # 1-based, inclusive
    inside = [b for b, (first, last) in answers.items() if first <= line <= last]
    statements = [n for n in ast.walk(ast.parse("".join(student.lines)))
                  if isinstance(n, ast.stmt) and n.lineno <= line <= n.end_lineno]
    if not inside and statements:
        stmt = min(statements, key=lambda n: n.end_lineno - n.lineno)
        inside = [b for b, (first, last) in answers.items() if stmt.lineno <= first and last <= stmt.end_lineno]
    return inside[0] if len(inside) == 1 else None


def run_checks(student: Student) -> dict[str, str]:
    """Each blank's result: '' when it passes, else what is wrong."""
    results = {b: NOT_DONE.format(b) for b in spec.BLANKS if b in student.blanks
               and spec.untouched(student.blanks[b].lines)}
    try:
        build_models(student, results)
    except Fail as error:
        results |= {b: str(error) for b in spec.BLANKS if b not in results and b not in spec.BLOCKS}
    for blank in (b for b in spec.BLANKS if b not in results):
        try:
            CHECKS[blank](student, blank)
            results[blank] = ""
        except Fail as error:
            results[blank] = str(error)
    return {blank: results[blank] for blank in spec.BLANKS}


def check_whole_model(student: Student) -> tuple[str, tuple[str, ...]]:
    """'' when the whole ResNet50 has the spec's parameters and sizes, else what is wrong, and the blanks whose part
    differs from what their check saw (code outside the blanks)."""
    try:
        with doing("building ResNet50()", "", student):
            model = student.module.ResNet50(num_classes=spec.NUM_CLASSES).eval()
        if count(model) != spec.PARAMETERS:
            part = next((p for p, n in spec.part_parameters().items() if count(getattr(model, p)) != n), None)
            where = f": the difference is in {part}" if part else ""
            return f"parameters: {spec.PARAMETERS:,} expected, got {count(model):,}{where}", spec.PARTS.get(part, ())
        x = torch.randn(2, *spec.INPUT)
        for part, blanks in spec.PARTS.items():
            with doing(f"running the whole ResNet50() at {part}", "", student):
                x = getattr(model, part)(x.flatten(1) if part == "fc" else x)
            if x.shape[1:] != (want := spec.LAYER_SHAPES.get(part, (spec.NUM_CLASSES,))):
                return f"in the whole ResNet50(), {part} gives {fmt(x)}, expected {fmt(want)}", blanks
        _, y = run_part(student, "", "the whole ResNet50() (its forward method)", model, spec.INPUT)
        want = (2, spec.NUM_CLASSES)
        return ("", ()) if y.shape == want else (f"forward: expected {fmt(want)}, got {fmt(y)}", ())
    except Fail as error:
        return str(error), ()


def main(argv: list[str] | None = None) -> int:
    """Check the file, print one line per blank and the totals; 0 when every line passes, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="check.py", description=__doc__.split("\n\n")[1],
                                     epilog="example: python check.py student/resnet.py   (exit code 0: every "
                                     "line passes, the 9 blanks and the whole model; 1: something to fix; 2: "
                                     "the file cannot be checked)")
    parser.add_argument("path", nargs="?", type=Path, default=Path(__file__).resolve().parent / "resnet.py",
                        help="your resnet.py, the file with the BEGIN/END BLANK lines "
                        "(default: resnet.py next to check.py)")
    student = import_student(parser.parse_args(argv).path)
    torch.manual_seed(0)
    with torch.no_grad():
        results = run_checks(student)
        whole, blanks = check_whole_model(student) if all(not r for r in results.values()) else (None, ())
    if blanks:  # what the whole model shows, the grader charges to these blanks too
        whole += f": look at {' and '.join(blanks)} (or at code outside the blanks that they use)"
    for blank in blanks:
        results[blank] = "the whole model differs in what this blank builds: see the whole-model line"
    print(f"Checking {student.path}")
    for blank, result in [*results.items(), ("whole model", whole)]:
        print(f"  {blank:<17} {shown(result)}")
    passed = [b for b in spec.BLANKS if not results[b]]
    points = {b: student.blanks[b].points if b in student.blanks else None for b in spec.BLANKS}
    total = "" if None in points.values() else f"; {sum(points[b] for b in passed)} of {sum(points.values())} points"
    print(f"{len(passed)} of {len(spec.BLANKS)} blanks pass{total}")
    return 0 if whole == "" else 1


def shown(result: str | None) -> str:
    """How a result reads in the report: pass, not done yet, or FAIL and what is wrong."""
    if result is None:
        return f"checked once all {len(spec.BLANKS)} blanks pass"
    return "pass" if not result else result if result.startswith("not done") else f"FAIL  {result}"


if __name__ == "__main__":
    run_cli(main)
