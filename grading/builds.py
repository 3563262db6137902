"""Compare what two files build for a blank (fingerprints, see fingerprint.py), without torch.

Behaviour over spelling: two builds are the same when every probe of the blank gives the same parameter
names and shapes (so the checkpoint's weights load into both), the same number of distinct parameter
tensors and, with the same weights in both, the same output (up to rounding); or when both fail in the
same way. Settings that change nothing (a list for an int, a pool's stride equal to its window) do not
count; the module trees only explain a difference in words.
"""
from __future__ import annotations

import difflib
import math
import re

from course.assignment import STAGES

RELATIVE = 1e-5  # of the output's absolute sum
BLOCK_BRANCHES = re.compile(r"^\d+\.layer\.")  # in a layer: what the blocks' own blanks build
INSIDE_BLOCKS = re.compile(r"^\d+\.")  # in a layer: everything inside its blocks
FIELDS = {"label", "tree", "params", "distinct", "output", "error", "kind"}


def valid(probes: object, labels: list[str]) -> list[dict] | None:
    """The probes of one blank as the sandbox reported them, if they have exactly the expected form (else None)."""
    def strings(value: object, width: int) -> bool:
        return isinstance(value, list) and all(
            isinstance(r, list) and len(r) == width and all(isinstance(x, str) for x in r) for r in value)

    def ints(value: object) -> bool:
        return isinstance(value, list) and all(type(x) is int for x in value)

    if not isinstance(probes, list) or [p.get("label") if isinstance(p, dict) else None for p in probes] != labels:
        return None
    for probe in probes:
        if not probe.keys() <= FIELDS:
            return None
        if "error" in probe:
            if not isinstance(probe["error"], str) or not isinstance(probe.get("kind", ""), str):
                return None
            continue
        output, params = probe.get("output"), probe.get("params")
        if not (strings(probe.get("tree"), 3) and isinstance(params, list) and type(probe.get("distinct")) is int
                and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and ints(r[1]) for r in params)
                and isinstance(output, dict)):
            return None
        if output.keys() == {"error"}:
            if not isinstance(output["error"], str):
                return None
        elif not (output.keys() == {"shape", "values"} and ints(output["shape"]) and isinstance(output["values"], list)
                  and all(type(v) in (int, float, str) for v in output["values"])):
            return None
    return probes


def same_build(mine: list[dict] | None, theirs: list[dict] | None) -> bool:
    """Whether two lists of probe fingerprints describe the same modules."""
    if mine is None or theirs is None or len(mine) != len(theirs):
        return False
    return all(difference(a, b) is None for a, b in zip(mine, theirs, strict=True))


def own_part(probes: list[dict] | None, blank_id: str, blocks_charged: bool = False) -> list[dict] | None:
    """A blank's build without what other blanks build inside it (a layer without its blocks' branches, or
    without anything inside its blocks when code outside the blanks already costs a block's points).

    The outputs go too: they depend on the parts left out. Used to tell whether code outside the
    blanks changes the blank itself, not a blank it contains (which is charged on its own).
    """
    if probes is None or blank_id not in STAGES:
        return probes
    pattern = INSIDE_BLOCKS if blocks_charged else BLOCK_BRANCHES
    return [{key: value for key, value in probe.items() if key not in ("output", "distinct")}
            | ({"tree": [row for row in probe["tree"] if not pattern.match(row[0])],
                "params": [row for row in probe["params"] if not pattern.match(row[0])]} if "tree" in probe else {})
            for probe in probes]


def same_shapes(mine: list[dict] | None, theirs: list[dict] | None) -> bool:
    """Whether two builds give outputs of the same shapes (what the per-layer tests check) on every probe."""
    if not mine or not theirs or len(mine) != len(theirs):
        return False
    shapes = [[p.get("output", {}).get("shape") for p in probes] for probes in (mine, theirs)]
    return None not in shapes[0] and shapes[0] == shapes[1]


def difference(mine: dict, theirs: dict) -> str | None:
    """How one probe's build differs from another's, None if it does not (see the module's docstring)."""
    if "error" in mine or "error" in theirs:
        if mine.get("kind") == theirs.get("kind") and "error" in mine and "error" in theirs:
            return None
        return mine.get("error") or f"it builds, where the other fails: {theirs['error']}"
    if mine["params"] != theirs["params"]:
        return tree_difference(mine["tree"], theirs["tree"], mine["params"], theirs["params"])
    if mine.get("distinct") != theirs.get("distinct"):
        return (f"{mine['distinct']} distinct parameter tensors where the reference has {theirs['distinct']}"
                " (a module used twice shares its weights)")
    if "output" not in mine and "output" not in theirs:  # own parts: what is left of the module tree
        return None if paths(mine["tree"]) == paths(theirs["tree"]) else tree_difference(mine["tree"], theirs["tree"])
    why = output_difference(mine.get("output", {}), theirs.get("output", {}))
    if why and mine["tree"] != theirs["tree"]:
        return tree_difference(mine["tree"], theirs["tree"])
    return why


def paths(tree: list[list[str]]) -> list[str]:
    """The paths of a module tree's rows."""
    return [row[0] for row in tree]


def output_difference(mine: dict, theirs: dict) -> str | None:
    """How two output summaries differ, None if they agree up to rounding."""
    if not mine or not theirs:
        return None if mine == theirs else "its output could not be compared"
    if "error" in mine or "error" in theirs:
        return None if mine.get("error") == theirs.get("error") else f"running it: {mine.get('error', 'fine')}"
    if mine["shape"] != theirs["shape"]:
        return f"its output has shape {tuple(mine['shape'])} where the reference's has {tuple(theirs['shape'])}"
    if any(isinstance(v, str) for v in mine["values"] + theirs["values"]):
        return None if mine["values"] == theirs["values"] else "its output is not finite"
    scale = abs(theirs["values"][1]) + 1e-6
    pairs = zip(mine["values"], theirs["values"], strict=False)
    if len(mine["values"]) != len(theirs["values"]) or any(
            not math.isclose(a, b, rel_tol=0, abs_tol=RELATIVE * scale) for a, b in pairs):
        return "the same layers, but with the same weights its output differs (is a forward method changed?)"
    return None


def describe_row(row: list[str]) -> str:
    """`layer.1.0: Conv2d(64, 64, kernel_size=(3, 3), stride=(1, 1))` from a tree row."""
    path, kind, settings = row
    return f"{path or '(top)'}: {kind.rsplit('.', 1)[-1]}({settings})"


def leaves(tree: list[list[str]]) -> list[str]:
    """The modules of a tree that hold no others (the layers themselves), as `type(settings)`."""
    paths = [row[0] for row in tree]
    return [describe_row(row).split(": ", 1)[1] for row in tree
            if not any(p.startswith(row[0] + ".") if row[0] else p for p in paths)]


def tree_difference(mine: list[list[str]], theirs: list[list[str]], my_params: list | None = None,
                    their_params: list | None = None) -> str:
    """The first place where two module trees (or, when the trees agree, their parameters) differ, in words."""
    if mine == theirs and my_params is not None:
        def describe_param(row: list | None) -> str:
            return f"{row[0]} {tuple(row[1])}" if row else "none"
        a, b = next((a, b) for a, b in zip([*my_params, None], [*their_params, None], strict=False) if a != b)
        return f"parameter {describe_param(a)} where the reference has {describe_param(b)}"
    if leaves(mine) == leaves(theirs):
        return ("the same layers as the reference, grouped differently: the parameter names differ (so the "
                "checkpoint's weights would not load)")
    top_mine = [row for row in mine if row[0] and "." not in row[0]]
    top_theirs = [row for row in theirs if row[0] and "." not in row[0]]
    if len(top_mine) != len(top_theirs):
        return f"it has {len(top_mine)} parts where the reference has {len(top_theirs)}"
    matcher = difflib.SequenceMatcher(None, [describe_row(r) for r in theirs], [describe_row(r) for r in mine],
                                      autojunk=False)
    for op, i1, _, j1, _ in matcher.get_opcodes():
        if op == "replace":
            return f"{describe_row(mine[j1])} where the reference has {describe_row(theirs[i1])}"
        if op == "insert":
            return f"{describe_row(mine[j1])} is not in the reference"
        if op == "delete":
            return f"{describe_row(theirs[i1])} of the reference is missing"
    return "the module trees differ"


def build_note(mine: list[dict] | None, theirs: list[dict] | None) -> str | None:
    """One note on how a blank's build differs from the reference's, with the probe it shows in."""
    if mine is None or theirs is None:
        return None
    for a, b in zip(mine, theirs, strict=False):
        if (why := difference(a, b)) is not None:
            return f"built as {a['label']}, {why}"
    return None
