"""Answers in normal form, for the text comparison: two answers with the same normal form are the same code.

The normal form of a call names every argument by its parameter and fills in the defaults:
`nn.Conv2d(3, 64, 7, 2, 3)` and `torch.nn.Conv2d(in_channels=3, out_channels=64, kernel_size=(7, 7),
stride=2, padding=3)` are one form. Constant arithmetic is folded (`64 * 4` is `256`), and a list
comprehension over `range(n)` is expanded into its n items, even when they use the loop name
(`ResidualBlock(512 if i == 0 else 1024, 256, 1024) for i in range(6)`).
"""
from __future__ import annotations

import ast
import copy
import io
import operator
import re
import textwrap
import tokenize
from typing import NamedTuple

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
MAX_REPEATS = 64  # a comprehension over a longer range is left as it is

OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
             ast.Mod: operator.mod, ast.Pow: operator.pow, ast.Eq: operator.eq, ast.NotEq: operator.ne,
             ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
             ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


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
    """The answer's items (as inside `nn.Sequential(...)`) or statements, as ast nodes, constants folded."""
    source = textwrap.dedent("".join(lines))
    if as_items:
        items = ast.parse("[\n" + source + "\n]", mode="eval").body.elts
        return [fold(item) for item in expand_repeats(items)]
    return [fold(node) for node in ast.parse(source).body if not inert(node)]


def inert(node: ast.stmt) -> bool:
    """A statement that does nothing: a docstring or other lone constant, `pass`."""
    return isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))


def expand_repeats(items: list[ast.expr]):
    """Yield the items, with `*[x for i in range(n)]` (or a generator) expanded into its n items."""
    for item in items:
        expanded = expansion(item.value) if isinstance(item, ast.Starred) else None
        yield from expanded if expanded is not None else [item]


def expansion(node: ast.expr) -> list[ast.expr] | None:
    """The items of `[x for i in range(...)]` or `(x for i in range(...))` with i replaced by each value."""
    if not isinstance(node, (ast.ListComp, ast.GeneratorExp)) or len(node.generators) != 1:
        return None
    loop = node.generators[0]
    if loop.ifs or loop.is_async or not isinstance(loop.target, ast.Name):
        return None
    values = range_values(loop.iter)
    if values is None:
        return None
    return [Substitute(loop.target.id, value).visit(copy.deepcopy(node.elt)) for value in values]


def range_values(node: ast.expr) -> range | None:
    """range(...) for a call `range(a[, b[, c]])` with constant arguments and at most MAX_REPEATS values."""
    if not isinstance(node, ast.Call) or ast.unparse(node.func) != "range" or node.keywords:
        return None
    args = [fold(arg) for arg in node.args]
    if not 1 <= len(args) <= 3 or not all(isinstance(a, ast.Constant) and type(a.value) is int for a in args):
        return None
    try:
        values = range(*(a.value for a in args))
    except ValueError:
        return None
    return values if len(values) <= MAX_REPEATS else None


class Substitute(ast.NodeTransformer):
    """Replace a name by a constant (the loop name of a comprehension by one of its values)."""

    def __init__(self, name: str, value: int):
        self.name, self.value = name, value

    def visit_Name(self, node: ast.Name) -> ast.expr:
        """The constant where the name is read."""
        return ast.Constant(self.value) if node.id == self.name else node


class Fold(ast.NodeTransformer):
    """Fold arithmetic, comparisons and `a if test else b` on constants: `64 * 4` -> `256`."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        """Fold the children first, then this node."""
        super().generic_visit(node)
        return folded(node)


def fold(node: ast.AST) -> ast.AST:
    """The node with its constant expressions folded."""
    return Fold().visit(node)


def constant(node: ast.AST) -> bool:
    """Whether a node is a number or a truth value."""
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, bool)


def folded(node: ast.AST) -> ast.AST:
    """One node folded when all its operands are constants; the node itself otherwise."""
    try:
        if isinstance(node, ast.BinOp) and constant(node.left) and constant(node.right):
            if isinstance(node.op, ast.Pow) and abs(node.right.value) > 64:
                return node
            return ast.Constant(OPERATORS[type(node.op)](node.left.value, node.right.value))
        if isinstance(node, ast.UnaryOp) and constant(node.operand):
            return ast.Constant(OPERATORS[type(node.op)](node.operand.value))
        if isinstance(node, ast.Compare) and constant(node.left) and all(map(constant, node.comparators)):
            values = [node.left.value, *(c.value for c in node.comparators)]
            pairs = zip(node.ops, values, values[1:], strict=False)
            return ast.Constant(all(OPERATORS[type(op)](a, b) for op, a, b in pairs))
        if isinstance(node, ast.BoolOp) and all(map(constant, node.values)):
            pick = all if isinstance(node.op, ast.And) else any
            return ast.Constant(pick(v.value for v in node.values))
        if isinstance(node, ast.IfExp) and constant(node.test):
            return node.body if node.test.value else node.orelse
    except (KeyError, ArithmeticError, TypeError, ValueError):
        return node
    return node


def normal_form(node: ast.AST) -> object:
    """A comparable form of an ast node: calls as CallForm, other expressions as their source."""
    if isinstance(node, ast.Call):
        return call_form(node)
    if isinstance(node, ast.Assign):
        return AssignForm(tuple(ast.unparse(t) for t in node.targets), normal_form(node.value))
    if isinstance(node, ast.AnnAssign) and node.value is not None:  # `self.fc: nn.Module = ...`: the same
        return AssignForm((ast.unparse(node.target),), normal_form(node.value))
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
    for key in SIZE_PARAMS & args.keys():  # (3, 3) and [3, 3] mean 3
        parts = re.fullmatch(r"[(\[](.+), \1[)\]]", str(args[key]))
        args[key] = parts[1] if parts else args[key]
    if name.endswith("Pool2d") and args.get("stride") == "None":  # a pool's stride defaults to its size
        args["stride"] = args.get("kernel_size")
    order = {p: i for i, p in enumerate(params)}
    return CallForm(name, tuple(sorted(args.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))))


def forms_of(lines: list[str], as_items: bool) -> list[object]:
    """The normal forms of an answer's items or statements (SyntaxError if it does not parse)."""
    return [normal_form(node) for node in parse_answer(lines, as_items)]


def the_call(forms: list[object]) -> tuple[tuple[str, ...], CallForm] | None:
    """(assignment targets, call) for an answer that is one call or `x = call`, else None."""
    if len(forms) != 1:
        return None
    targets, value = (forms[0].targets, forms[0].value) if isinstance(forms[0], AssignForm) else ((), forms[0])
    return (targets, value) if isinstance(value, CallForm) else None


def show(form: object) -> str:
    """A short text for a normal form, for the notes."""
    return f"{form.name}(...)" if isinstance(form, CallForm) else str(form)
