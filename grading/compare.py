"""The text verdict on one answer: same, equivalent, different or missing, with notes on what differs.

      same        identical once comments and whitespace are dropped;
      equivalent  the same normal form (see forms.py), or one of the accepted alternatives below;
      different   anything else, with notes on what differs and on the classic mistakes;
      missing     no answer, or only the skeleton's placeholder (course/assignment.py's `untouched`).

Accepted alternatives (the layer sizes and parameter counts stay those of the assignment)
    avgpool    nn.AvgPool2d(2) with any stride (or ceil_mode, count_include_pad): the map
               is 2x2, so every stride takes the one 2x2 window; nn.AdaptiveAvgPool2d(1)
               or ((1, 1)): the same average over the whole map.
    stem_conv  the 7x7 stride-2 conv with another padding, if a 32x32 image still
               gives 16x16. Only padding=3 does: padding=2 gives 15x15.
    stem_pool  the 3x3 stride-2 max-pool with another padding or ceil_mode, if 16x16
               still gives 8x8: padding=1, or padding=0 with ceil_mode=True.
    Not accepted: `*[block] * 5` (five times the SAME block: its weights are shared).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from course.assignment import Blank, untouched
from course.cli import UserError
from grading import REFERENCE
from grading.forms import AssignForm, CallForm, code_tokens, forms_of, show, the_call
from grading.markers import placeholders, read_source, reference_blanks

STRIDE_NOTE = "shapes are still right, but the stride belongs on the first 1x1 (the assignment's design)"
PADDING_NOTE = "padding=0 on the 3x3: H and W shrink by 2 in every block (a 3x3 needs padding=1 to keep them)"
ACCEPTED = ("same", "equivalent")


@dataclass
class Reference:
    """The reference resnet.py: its text, its blanks, their placeholders and each answer in normal form."""
    text: str
    blanks: dict[str, Blank]
    placeholders: dict[str, list[str]] = field(default_factory=dict)
    as_items: dict[str, bool] = field(default_factory=dict)
    forms: dict[str, list[object]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = REFERENCE) -> Reference:
        """Read and check the reference file."""
        if not path.is_file():
            raise UserError(f"{path} is missing: grading needs the reference resnet.py")
        text = read_source(path)
        ref = cls(text, reference_blanks(text, path.name))
        ref.placeholders = placeholders(text, ref.blanks)
        for blank in ref.blanks.values():
            try:  # an answer that parses as the items of a list sits inside nn.Sequential(...)
                ref.forms[blank.id], ref.as_items[blank.id] = forms_of(blank.lines, as_items=True), True
            except SyntaxError:
                ref.forms[blank.id], ref.as_items[blank.id] = forms_of(blank.lines, as_items=False), False
        return ref


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


def differences(student: list[object], reference: list[object], limit: int = 4) -> list[str]:
    """Notes on what differs between two answers in normal form, item by item."""
    notes = []
    if len(student) != len(reference):
        notes.append(f"{len(student)} item(s) where the reference has {len(reference)}")
    found: dict[tuple[str, str], list[int]] = {}  # (call name, what differs) -> the items where it does
    for i, (mine, ref) in enumerate(zip(student, reference, strict=False), 1):
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
           for mine, ref in zip(student, reference, strict=True)):
        notes.append(PADDING_NOTE)
    return notes


def compare(ref: Reference, blank_id: str, answer: list[str]) -> tuple[str, list[str]]:
    """The verdict (same, equivalent, different, missing) on one answer, with notes."""
    if untouched(answer):
        return "missing", ["no answer between the markers"]
    if code_tokens(answer) == code_tokens(ref.blanks[blank_id].lines):
        return "same", []
    try:
        forms = forms_of(answer, ref.as_items[blank_id])
    except (SyntaxError, RecursionError, MemoryError) as error:
        line = (getattr(error, "lineno", None) or 1) - ref.as_items[blank_id]  # items are parsed after a "[" line
        return "different", [f"does not parse: {getattr(error, 'msg', error)} (line {line} of the answer)"]
    if forms == ref.forms[blank_id]:
        return "equivalent", ["the same code as the reference, written differently"]
    if blank_id in ALTERNATIVES and (note := ALTERNATIVES[blank_id](forms, ref.forms[blank_id])):
        return "equivalent", [note]
    return "different", classic_mistakes(forms, ref.forms[blank_id]) + differences(forms, ref.forms[blank_id])
