"""The models by name, and their checkpoints: one file format, one way to load a trained model.

    model = models.load_trained("checkpoints/resnet50_cifar10.pt", classes, device)
"""
import importlib
import importlib.util
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from course import cli
from course.cli import UserError

CHECKPOINT_FORMAT = 1


# name -> (module, class, keyword arguments); imported only when asked for, so a copy without a module (the
# students' handout has no resnet_cifar.py, whose block is close to the answers) still builds the others
MODELS = {
    "resnet50": ("resnet", "ResNet50", {}),  # the assignment
    "resnet50-cifar": ("course.resnet_cifar", "ResNet50Cifar", {}),  # the reports' CIFAR-stem variant
    "vgg16": ("vgg", "VGG16", {"head": "cifar"}),
    "vgg16-course": ("vgg", "VGG16", {"head": "course"}),  # the course report's 4096-wide head
    "airbench": ("course.airbench", "AirbenchNet", {}),  # the distillation teacher (tools/train_teacher.py)
}


def model_class(arch: str) -> tuple[type, dict]:
    """The class of one of MODELS and its keyword arguments; a UserError when its file is not in this copy."""
    if arch not in MODELS:
        raise UserError(f"unknown model '{arch}': use one of {', '.join(available_models())}.")
    module_name, class_name, options = MODELS[arch]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:  # a module that is there failed to import: that is not ours to hide
            raise
        raise UserError(f"{arch} ({module_name.replace('.', '/')}.py) is not part of this copy of the project: "
                        f"use --model {' or '.join(available_models())}.") from None
    return getattr(module, class_name), options


def available_models() -> list[str]:
    """The names of MODELS whose file this copy of the project has (the handout: resnet50 only)."""
    return [arch for arch, (module, _, _) in MODELS.items() if importlib.util.find_spec(module) is not None]


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A fresh model by name: one of MODELS."""
    cls, options = model_class(arch)
    return cls(num_classes, **options)


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict, half: bool = False, **state) -> None:
    """Write model weights, metadata and any extra state atomically (temp file, then rename)."""
    weights = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    content = {"format": CHECKPOINT_FORMAT, **meta, "torch_version": str(torch.__version__), "model": weights, **state}
    with cli.atomic_file(path) as f:
        torch.save(content, f)


def load_checkpoint(path: str | Path, device="cpu") -> dict:
    """Read a checkpoint safely (weights_only=True); any problem becomes a UserError."""
    path, shown = Path(path), cli.display_path(path)
    again = "Download or copy it again, or train a new one with train.py."
    if not path.is_file():
        raise UserError(f"checkpoint {shown} not found.")
    if path.stat().st_size == 0:
        raise UserError(f"cannot read checkpoint {shown}: the file is empty. {again}")
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive; a cut-off one loses its index
        raise UserError(f"cannot read checkpoint {shown}: it is truncated or not a PyTorch file. {again}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), "unsupported content")
        raise UserError(f"refusing to load {shown}: it holds objects other than tensors and plain values, "
                        f"which could run code ({reason}). Only load checkpoints written by this project.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise UserError(f"cannot read checkpoint {shown}: it is truncated or not a PyTorch file "
                        f"({str(error).splitlines()[0]}). {again}") from None
    if not (isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT
            and isinstance(checkpoint.get("model"), dict)
            and all(isinstance(value, torch.Tensor) for value in checkpoint["model"].values())):
        raise UserError(f"{shown} is not a checkpoint of this project (no 'format': {CHECKPOINT_FORMAT} with "
                        "model weights; a bare model.state_dict() is not one either). Make one with train.py.")
    broken = [key for key, value in checkpoint["model"].items()  # fp16's inf is a running variance's overflow
              if value.is_floating_point() and (value.isnan().any() or (value.isinf().any()
                                                                        and not key.endswith("running_var")))]
    if broken:
        more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
        raise UserError(f"{shown} is damaged: its weights hold values that are not numbers (NaN or infinity), in "
                        f"{broken[0]}{more}. {again}")
    return checkpoint


def shape_text(tensor: torch.Tensor) -> str:
    """A tensor's shape as the assignment writes it: '64 x 3 x 7 x 7'."""
    return " x ".join(map(str, tensor.shape)) or "a single number"


def weight_mismatches(model: nn.Module, state: dict, limit: int = 3) -> list[str]:
    """How a state dict differs from the model's parameters, in the model's order: shapes, missing, extra keys."""
    expected = model.state_dict()
    shapes = [f"{key} (the model: {shape_text(expected[key])}, the checkpoint: {shape_text(state[key])})"
              for key in expected if key in state and expected[key].shape != state[key].shape]
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    problems = []
    for keys, what in [(shapes, "of another shape"), (missing, "missing from the checkpoint"),
                       (extra, "in the checkpoint but not in the model")]:
        if keys:
            more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
            problems.append(f"{len(keys)} {what}: {', '.join(keys[:limit])}{more}")
    return problems


def load_weights(model: nn.Module, checkpoint: dict, arch: str, classes: tuple[str, ...], path) -> None:
    """Put a checkpoint's weights into model after checking architecture, classes and every parameter's shape."""
    shown = cli.display_path(path)
    if checkpoint.get("arch") != arch:
        raise UserError(f"{shown} holds a '{checkpoint.get('arch')}' model, not '{arch}'. "
                        f"Pass --model {checkpoint.get('arch')} or a checkpoint of the right model.")
    if tuple(checkpoint.get("classes", ())) != tuple(classes):
        raise UserError(f"{shown} was trained on {len(checkpoint.get('classes', ()))} classes "
                        f"({', '.join(checkpoint.get('classes', ()))}), not on {', '.join(classes)}. "
                        "Pass the matching --classes, or --no-pretrained to start from scratch.")
    state = {key.removeprefix("module."): value for key, value in checkpoint["model"].items()}
    if problems := weight_mismatches(model, state):
        where = ("The first name is the layer to fix in resnet.py (`python check.py resnet.py` checks each blank)."
                 if arch == "resnet50" else "The first name is the first layer that differs.")
        raise UserError(f"the weights in {shown} do not fit this {arch}: {'; '.join(problems)}. {where}")
    model.load_state_dict(state, strict=True)


def load_trained(path: str | Path, classes: tuple[str, ...] | None = None, device="cpu",
                 arch: str | None = None) -> tuple[nn.Module, dict]:
    """A trained model with its weights on `device`, and its checkpoint. `classes` and `arch`, when given, are what
    the checkpoint must hold (a clear error otherwise); left out, they are the checkpoint's own."""
    checkpoint = load_checkpoint(path, device)
    arch = arch or checkpoint.get("arch")
    classes = tuple(checkpoint.get("classes", ())) if classes is None else tuple(classes)
    model = build_model(arch, len(classes))
    load_weights(model, checkpoint, arch, classes, path)
    return model.to(device), checkpoint
