#!/usr/bin/env python3
"""Self-check for the ResNet-50 assignment:  python check.py [student/resnet.py]

Runs the assignment's layer checks on YOUR file and prints one line per blank (the code between
`# BEGIN BLANK <id>` and `# END BLANK <id>`): pass, not done yet, or what is wrong and where to look.
Each blank is checked on its own, so one mistake shows only in its own line. The sizes, the channel
widths each block is built with and the hints are the assignment's (course/assignment.py).
"""
from __future__ import annotations

import argparse
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from course import assignment as spec
from course.cli import run_cli

fmt = spec.size_text  # (64, 8, 8) -> '64 x 8 x 8'


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


@contextmanager
def doing(what: str, blank: str, student: Student):
    """Turn any exception inside the block into a Fail that says what was being done, and what to look at."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - whatever the student's code raises
        look = spec.SPATIAL if blank in spec.BLOCKS and spec.SIZE_ERRORS.search(str(error)) else spec.HINTS.get(blank)
        raise Fail(f"{what} raised {spec.plain(error, student.path)}" + (f" - {look}" if look else "")) from None


def run_part(student: Student, blank: str, what: str, module: nn.Module, shape: tuple) -> tuple[torch.Tensor, ...]:
    """A random batch of 2 inputs of this shape, and the module's output for it (an error is a Fail)."""
    x = torch.randn(2, *shape)
    with doing(f"running {what} on a {fmt(shape)} input", blank, student):
        return x, module(x)


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
            raise Fail(spec.NOT_DONE.format(blank))
        _, y = run_part(student, blank, f"the branch (self.layer) of {name}", branch, (c_in, size, size))
        side = (size + 1) // 2 if down else size  # a stride-2 1x1 convolution gives ceil(size / 2)
        if y.dim() != 4 or y.shape[1] != out:
            raise Fail(f"the branch of {name} gives {fmt(y)}, expected {out} channels (out_channels): {spec.CHANNELS}")
        if y.shape[2:] != (side, side):
            what = "it should halve H and W, once" if down else "H and W should stay the same"
            raise Fail(f"the branch of {name} turns {size} x {size} into {fmt(y.shape[2:])}: {what}: {spec.SPATIAL}")
        convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
        if [c.kernel_size for c in convs] != [(1, 1), (3, 3), (1, 1)]:
            got = " -> ".join("x".join(map(str, c.kernel_size)) for c in convs)
            raise Fail(f"the block's branch should be 1x1 -> 3x3 -> 1x1 convolutions, yours is {got}")
        if down and convs[0].stride != (2, 2):
            raise Fail("the first 1x1 convolution should halve H and W (the other two keep them)")
        if count(block) != (want := spec.block_parameters(c_in, middle, out)):
            raise Fail(f"{name} has {count(block):,} parameters, expected {want:,}: {spec.CHANNELS}")
        run_part(student, blank, name, block, (c_in, size, size))


def layer1_part(student: Student, blank: str) -> nn.Sequential:
    """The modules of layer1 that come from one blank: those before its BatchNorm2d, or after the ReLU."""
    items = list(student.models[0].layer1)
    norm = next((i for i, m in enumerate(items) if isinstance(m, nn.BatchNorm2d)), None)
    if norm is None:
        raise Fail("layer1 should keep its BatchNorm2d(64) and ReLU lines between the two blanks")
    part = nn.Sequential(*(items[:norm] if blank == "stem_conv" else items[norm + 2:]))
    if len(part) == 0:
        raise Fail(spec.NOT_DONE.format(blank))
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
                   f"{spec.HINTS['stem_conv']}")


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
        raise Fail(spec.NOT_DONE.format(layer))
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
            raise Fail(f"{layer}, block {i} takes {c_in} channels in, but {source}: {spec.CALLS}")
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
        raise Fail(spec.NOT_DONE.format(blank))
    x, y = run_part(student, blank, "avgpool", student.models[0].avgpool, spec.PART_INPUTS["avgpool"])
    if y.shape[1:] != (want := spec.LAYER_SHAPES["avgpool"]):
        raise Fail(f"avgpool: expected {fmt(want)}, got {fmt(y)}: {spec.HINTS['avgpool']}")
    if not torch.allclose(y.flatten(1), x.mean((2, 3)), atol=1e-5):
        raise Fail("avgpool has the right size, but it is not the average of the 2 x 2 map (a max-pool?)")


def check_fc(student: Student, blank: str) -> None:
    """fc turns the 1024 pooled features into num_classes logits."""
    model, model3 = student.models
    if getattr(model, "fc", None) is None:
        raise Fail(spec.NOT_DONE.format(blank))
    with doing("running fc on the pooled features (what avgpool gives, flattened)", blank, student):
        y, y3 = (m.fc(torch.randn(2, *spec.PART_INPUTS["fc"])) for m in (model, model3))
    if y.shape[1:] != (spec.NUM_CLASSES,):
        raise Fail(f"fc: expected {spec.NUM_CLASSES} logits per image, got {fmt(y)}: {spec.HINTS['fc']}")
    if y3.shape[1:] != (3,):
        raise Fail(f"fc: ResNet50(num_classes=3) gives {fmt(y3)} logits, expected 3: use num_classes, not 10")
    if count(model.fc) != (want := spec.part_parameters()["fc"]):
        raise Fail(f"fc has {count(model.fc):,} parameters, expected {want:,}: {spec.HINTS['fc']}")


CHECKS = {"stem_conv": check_stem_conv, "stem_pool": check_stem_pool, "block_downsample": check_block,
          "block_same": check_block, "layer2": check_layer, "layer3": check_layer, "layer4": check_layer,
          "avgpool": check_avgpool, "fc": check_fc}


# ------------------------------------------------ running them

def build_models(student: Student, results: dict[str, str]) -> None:
    """ResNet50 for 10 and 3 classes, each ResidualBlock only recorded; a blank that breaks the build is set aside."""
    lines = list(student.lines)
    for _ in range(len(spec.BLANKS) + 1):  # each round sets one more blank aside
        module = spec.run_student_file(student.path, lines)
        module.ResidualBlock = Recorder
        try:
            student.models = module.ResNet50(num_classes=spec.NUM_CLASSES), module.ResNet50(num_classes=3)
            return
        except Exception as error:  # noqa: BLE001 - whatever the student's code raises
            message = f"building ResNet50() raised {spec.plain(error, student.path)}"
            blank = spec.blank_at(student.blanks, student.lines, spec.traceback_lines(error, student.path))
            if blank is None or blank in results:
                raise Fail(message) from None
            results[blank] = f"{message} - {spec.HINTS[blank]}"
            b = student.blanks[blank]
            lines[b.begin + 1:b.end] = ["#\n"] * len(b.lines)  # set aside, same line numbers


def run_checks(student: Student) -> dict[str, str]:
    """Each blank's result: '' when it passes, else what is wrong."""
    results = {b: spec.NOT_DONE.format(b) for b in spec.BLANKS if b in student.blanks
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
                        help="your resnet.py, with the BEGIN/END BLANK lines (default: resnet.py next to check.py)")
    path = parser.parse_args(argv).path
    lines, module = spec.import_student_file(path)  # a file Python cannot import: a UserError, exit code 2
    student = Student(path, lines, spec.find_blanks("".join(lines))[0], module)
    torch.manual_seed(0)
    with torch.no_grad():
        results = run_checks(student)
        whole, blanks = check_whole_model(student) if all(not r for r in results.values()) else (None, ())
    if blanks:  # what the whole model shows, the grader charges to these blanks too
        whole += f": look at {' and '.join(blanks)} (or at code outside the blanks that they use)"
    results |= {b: "the whole model differs in what this blank builds: see the whole-model line" for b in blanks}
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
