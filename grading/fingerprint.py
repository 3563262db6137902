"""What a blank builds, as JSON that the grader compares without torch. Runs inside the sandbox (see runner.py),
and outside it on the reference's files (`python fingerprint.py --serve DIR`, see reference.py).

Each blank defines a module (a block, a layer, the stem, the pool, the classifier). A probe (the table
is course/assignment.py's, shared with check.py; the grader sends it in the plan) builds it from a loaded
resnet.py and records:
    tree      every submodule: its path, its type (the torch class it derives from), its settings
              (kernel sizes, strides, paddings, channels, bias; ReLU's `inplace` left out), for notes;
    params    every parameter's name and shape, and how many distinct parameter tensors there are;
    output    with every weight set to values drawn from the job's seed (in order of the parameter
              names, so two modules with the same names and shapes get the same weights), a summary of
              the output on an input drawn from the same seed: its shape, its sum, its absolute sum and
              8 random projections. The grader draws the seed per job and computes the reference's
              answers for it outside the sandbox: only a module that computes what the reference
              computes can give them.
"""
from __future__ import annotations

import json
import math
import re
import sys
import types
from pathlib import Path

import torch
from torch import nn

# BLOCK and label are course/assignment.py's, copied: this file runs where only grading/ is bound (sandbox.py),
# and fingerprint --serve runs from grading/ too. tests/grading/test_grade_parts.py keeps the copies the same.
BLOCK = "ResidualBlock"
PROJECTIONS = 8


def label(probe: list | tuple) -> str:
    """`ResidualBlock(12, 4, 20, True)` or `ResNet50(10).layer1`, as the grader labels the probe it sent."""
    cls, args, attribute, _ = probe
    return f"{cls}({', '.join(map(str, args))})" + (f".{attribute}" if attribute else "")


def probe_all(module: types.ModuleType, probes: dict[str, list], seed: int,
              built: dict[tuple, object] | None = None) -> dict[str, list[dict]]:
    """blank -> the fingerprints of what it builds, for every probe of the blank (`built`: models to reuse)."""
    built = {} if built is None else built
    return {blank_id: [probe_one(module, probe, built, seed) for probe in blank_probes]
            for blank_id, blank_probes in probes.items()}


def probe_one(module: types.ModuleType, probe: list | tuple, built: dict[tuple, object], seed: int) -> dict:
    """The fingerprint of one probe; a model built for one probe is reused by the next."""
    cls, args, attribute, shape = probe[0], tuple(probe[1]), probe[2], tuple(probe[3])
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
        fill(part, seed)
        result["output"] = output(part, shape, seed)
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


def generator(seed: int, stream: int) -> torch.Generator:
    """A random generator for one use (weights, input, projections) of the job's seed."""
    return torch.Generator().manual_seed(seed * 100_003 + stream)


def fill(module: nn.Module, seed: int) -> None:
    """Set every weight and statistic to values drawn in order: the same names and shapes get the same values."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    with torch.no_grad():
        for i, (name, tensor) in enumerate(tensors):
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator(seed, 1000 + i), dtype=torch.float64)
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                values = 0.5 + values.abs()
            elif tensor.dim() > 1:
                values /= math.sqrt(max(1, tensor[0].numel()))
            else:
                values = values * 0.1 + (1.0 if leaf == "weight" else 0.0)
            tensor.copy_(values.float().to(tensor.dtype))  # float32 values whatever the file's default dtype


def output(module: nn.Module, shape: tuple[int, ...], seed: int) -> dict:
    """The output's shape and summary on an input drawn from the seed, in eval mode. The input is drawn in float32
    whatever the file's default dtype (torch.set_default_dtype), then given in the module's own dtype."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    x = torch.randn(shape, generator=generator(seed, 1), dtype=torch.float32).to(dtype)
    module.eval()
    with torch.no_grad():
        y = module(x)
    if not isinstance(y, torch.Tensor):
        return {"error": f"it returns {type(y).__name__}, not a tensor"}
    flat = y.detach().double().flatten()
    directions = torch.randn(PROJECTIONS, flat.numel(), generator=generator(seed, 7),
                             dtype=torch.float64)
    values = [flat.sum().item(), flat.abs().sum().item(), *(directions @ flat).tolist()]
    return {"shape": list(y.shape), "values": [v if math.isfinite(v) else str(v) for v in values]}


def serve(folder: Path) -> None:
    """The reference's answers, outside the sandbox: read `{"seed", "want": [[file, blank, probes]]}` lines on
    stdin, answer each with one line `{"answers": [...], "cpu": seconds}`. Files and built models are kept."""
    import resource

    torch.set_num_threads(1)
    modules: dict[str, types.ModuleType] = {}
    built: dict[str, dict] = {}
    for line in sys.stdin:
        request = json.loads(line)
        answers = []
        for name, blank_id, probes in request["want"]:
            if name not in modules:
                modules[name], built[name] = load(folder / name), {}
            answers.append(probe_all(modules[name], {blank_id: probes}, request["seed"], built[name])[blank_id])
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"answers": answers, "cpu": usage.ru_utime + usage.ru_stime}), flush=True)


def load(path: Path) -> types.ModuleType:
    """Import a reference file (ours: no student code) as a fresh module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"reference_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    serve(Path(sys.argv[2]))
