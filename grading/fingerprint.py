"""What a blank builds, as JSON that the grader compares without torch. Runs inside the sandbox (see runner.py).

Each blank defines a module (a block, a layer, the stem, the pool, the classifier). A probe builds it
from a loaded resnet.py and records:
    tree      every submodule: its path, its type (the torch class it derives from), its settings
              (kernel sizes, strides, paddings, channels, bias; ReLU's `inplace` left out, it changes
              no value);
    params    every parameter's name and shape, and how many distinct parameter tensors there are;
    output    with every weight set to the same fixed values the reference gets (drawn in order, so
              two modules with the same tree get the same weights), a summary of the output on a
              fixed input: its shape, its sum, its absolute sum and 8 fixed random projections.
"""
from __future__ import annotations

import math
import re
import types

import torch
from torch import nn

BLOCK, MODEL = "ResidualBlock", "ResNet50"
PROBES = {  # blank -> what it builds: (class, constructor arguments, attribute or "", input shape)
    "block_downsample": [(BLOCK, (256, 64, 256, True), "", (2, 256, 8, 8)),
                         (BLOCK, (12, 4, 20, True), "", (2, 12, 6, 6))],
    "block_same": [(BLOCK, (64, 64, 256, False), "", (2, 64, 8, 8)),
                   (BLOCK, (12, 4, 20, False), "", (2, 12, 5, 5))],
    "stem_conv": [(MODEL, (10,), "layer1", (2, 3, 32, 32))],
    "stem_pool": [(MODEL, (10,), "layer1", (2, 3, 32, 32))],
    "layer2": [(MODEL, (10,), "layer2", (2, 64, 8, 8))],
    "layer3": [(MODEL, (10,), "layer3", (2, 256, 4, 4))],
    "layer4": [(MODEL, (10,), "layer4", (2, 512, 2, 2))],
    "avgpool": [(MODEL, (10,), "avgpool", (2, 1024, 2, 2))],
    "fc": [(MODEL, (10,), "fc", (2, 1024)), (MODEL, (7,), "fc", (2, 1024))],
}
PROJECTIONS = 8


def label(probe: tuple) -> str:
    """`ResidualBlock(256, 64, 256, True)` or `ResNet50(10).layer1`, for the notes."""
    cls, args, attribute, _ = probe
    return f"{cls}({', '.join(map(str, args))})" + (f".{attribute}" if attribute else "")


def probe_all(module: types.ModuleType, blank_ids: list[str]) -> dict[str, list[dict]]:
    """blank -> the fingerprints of what it builds, for every probe of the blank."""
    built: dict[tuple, object] = {}
    return {blank_id: [probe_one(module, probe, built) for probe in PROBES[blank_id]] for blank_id in blank_ids}


def probe_one(module: types.ModuleType, probe: tuple, built: dict[tuple, object]) -> dict:
    """The fingerprint of one probe; a model built for one probe is reused by the next."""
    cls, args, attribute, shape = probe
    result = {"label": label(probe)}
    try:
        if (cls, args) not in built:
            torch.manual_seed(0)
            built[cls, args] = getattr(module, cls)(*args[:3], downsample=args[3]) if cls == BLOCK \
                else getattr(module, cls)(num_classes=args[0])
        part = getattr(built[cls, args], attribute) if attribute else built[cls, args]
    except Exception as error:  # noqa: BLE001 - any failure of the student's code is a result
        return {**result, "error": f"building it failed: {type(error).__name__}: {str(error)[:150]}",
                "kind": type(error).__name__}
    if not isinstance(part, nn.Module):
        return {**result, "error": f"it builds {type(part).__name__}, not a torch module", "kind": type(part).__name__}
    try:
        result.update(tree=tree(part, module.__name__), params=params(part),
                      distinct=len(list(part.parameters())))
        fill(part)
        result["output"] = output(part, shape)
    except Exception as error:  # noqa: BLE001
        result.setdefault("output", {"error": f"{type(error).__name__}: {str(error)[:150]}"})
    return result


def type_name(obj: object, own: str) -> str:
    """The torch class a module's class derives from (`torch.nn.modules.conv.Conv2d`): a subclass is judged by
    its settings and outputs. A module class of the loaded file itself keeps its name (`ResidualBlock`)."""
    cls = type(obj)
    base = next((c for c in cls.__mro__ if c.__module__.split(".")[0] == "torch"), cls)
    if base is nn.Module and cls.__module__ == own:
        return cls.__qualname__
    return f"{base.__module__}.{base.__qualname__}"


def settings(module: nn.Module) -> str:
    """A module's settings as PyTorch prints them, without ReLU's `inplace`."""
    try:
        text = module.extra_repr()
    except Exception:  # noqa: BLE001
        return "?"
    return re.sub(r"(,\s*)?inplace=(True|False)", "", text).strip(", ")


def tree(module: nn.Module, own: str) -> list[list[str]]:
    """[path, type, settings] of the module and every submodule (a shared one at each of its places)."""
    return [[path, type_name(m, own), settings(m)] for path, m in module.named_modules(remove_duplicate=False)]


def params(module: nn.Module) -> list[list]:
    """[name, shape] of every parameter (a shared one at each of its places)."""
    return [[name, list(p.shape)] for name, p in module.named_parameters(remove_duplicate=False)]


def fill(module: nn.Module) -> None:
    """Set every weight and statistic to fixed values drawn in order: the same tree gets the same values."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    with torch.no_grad():
        for i, (name, tensor) in enumerate(tensors):
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=torch.Generator().manual_seed(1000 + i), dtype=torch.float64)
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                values = 0.5 + values.abs()
            elif tensor.dim() > 1:
                values /= math.sqrt(max(1, tensor[0].numel()))
            else:
                values = values * 0.1 + (1.0 if leaf == "weight" else 0.0)
            tensor.copy_(values.to(tensor.dtype))


def output(module: nn.Module, shape: tuple[int, ...]) -> dict:
    """The output's shape and summary on a fixed input, in eval mode."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    module.eval()
    with torch.no_grad():
        y = module(x)
    if not isinstance(y, torch.Tensor):
        return {"error": f"it returns {type(y).__name__}, not a tensor"}
    flat = y.detach().double().flatten()
    directions = torch.randn(PROJECTIONS, flat.numel(), generator=torch.Generator().manual_seed(7),
                             dtype=torch.float64)
    values = [flat.sum().item(), flat.abs().sum().item(), *(directions @ flat).tolist()]
    return {"shape": list(y.shape), "values": [v if math.isfinite(v) else str(v) for v in values]}
