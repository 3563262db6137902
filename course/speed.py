"""The device, its seeds, and the fastest way to run a model on it: precision, memory layout, 1x1 convolutions.

What is fastest differs from CPU to CPU (bf16 autocast is twice as fast on a CPU with AVX512_BF16 or AMX,
and 5 to 20 times slower on one without) and between training and evaluation. `choose` decides by rules
drawn from every CPU measured so far (docs/speed.md), without timing anything, so the first run is as fast
as any later one; `python -m experiments.bench --candidates` times every candidate on a new machine.
None of this changes what the model computes beyond float rounding: `fp32` means no reduced precision.

    choice = speed.choose("resnet50", training=True, device=device)
    print(choice.line())   # Speed (training): bf16 autocast, channels_last, 1x1 convs as matmuls (...)
    model = speed.prepare(model, device, choice.config)
    with speed.autocast(device, choice.config): ...
"""
import copy
import functools
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from course import models
from course.cli import UserError

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = ("auto (default): bf16 autocast where the hardware computes bf16 natively (CPU: AVX512_BF16 or "
                  "AMX; GPU: Ampere or later), else fp32; fp32: no reduced precision anywhere; bf16: bf16 autocast")
DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: cuda, then mps, then cpu)"
MEASURED_CPUS = ("x86_64", "AMD64")  # the rules below come from x86 CPUs; others keep the course's layout


@dataclass(frozen=True)
class Config:
    """One way to run a model. precision: 'fp32' or 'bf16' (autocast)."""
    precision: str
    channels_last: bool
    matmul_1x1: bool

    def describe(self) -> str:
        """'bf16 autocast, channels_last, 1x1 convs as matmuls'."""
        words = "bf16 autocast" if self.precision == "bf16" else "fp32"
        words += ", channels_last" if self.channels_last else ", NCHW"
        return words + (", 1x1 convs as matmuls" if self.matmul_1x1 else "")


COURSE_WAY = Config("fp32", channels_last=False, matmul_1x1=False)  # the course's loop: the baseline of every speedup


# ---------------------------------------------------- the device and the seeds

def pick_device(name: str | None = None) -> torch.device:
    """The requested device, else cuda, then mps, then cpu."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UserError(f"unknown device '{name}': use cpu, cuda, cuda:1 or mps.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {name} was asked for, but PyTorch sees no CUDA GPU here. "
                            "Leave --device out to use the best device available.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"--device {name} was asked for, but MPS is not available here. "
                            "Leave --device out to use the best device available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------- applying a config

class MatmulConv1x1(nn.Conv2d):
    """A 1x1 convolution computed as one matrix multiply: same weights, same result up to rounding.

    On the CPUs measured, oneDNN is slow for 1x1 convolutions on the tiny 2x2 and 4x4 maps of
    this network in training, and a plain matrix multiply is faster.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # NHWC: a view of channels_last memory
        if self.stride != (1, 1):  # sliced in NHWC, so that the gradient of the slice is channels_last too
            x = x[:, ::self.stride[0], ::self.stride[1]]  # (a layout mismatch makes ReLU's backward 10x slower)
        return F.linear(x, self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)


def is_plain_1x1_conv(module: nn.Module) -> bool:
    """Whether `module` is a 1x1 convolution that MatmulConv1x1 can compute (no padding, no groups)."""
    return (type(module) in (nn.Conv2d, MatmulConv1x1) and module.kernel_size == (1, 1)
            and module.padding == (0, 0) and module.groups == 1)


def prepare(model: nn.Module, device: torch.device, config: Config) -> nn.Module:
    """Move `model` to `device` the way `config` says (in place; parameters stay the same objects).

    The 1x1 convolutions become MatmulConv1x1 (or back) by changing their class, so the student's
    resnet.py stays free of speed tricks and the state_dict stays the same. Calling it again switches over.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
    for module in model.modules():
        if is_plain_1x1_conv(module):
            module.__class__ = MatmulConv1x1 if config.matmul_1x1 else nn.Conv2d
    return model.to(device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """An inference-only copy of `model`: each batch-norm that directly follows a convolution in an nn.Sequential
    is folded into that convolution's weights and bias (its running statistics are constants in evaluation), so
    evaluation skips one pass over every activation. The same outputs up to rounding; `model` is untouched."""
    folded = copy.deepcopy(model).eval()
    for sequence in [module for module in folded.modules() if isinstance(module, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            conv, norm = sequence[i], sequence[i + 1]
            if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and norm.track_running_stats:
                sequence[i], sequence[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return folded


def autocast(device: torch.device, config: Config):
    """bf16 autocast when the config says so; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


# ------------------------------------------------------------------ the rules

def native_bf16(device: torch.device) -> bool:
    """Whether the hardware computes in bf16 natively (CPU: AVX512_BF16 or AMX; GPU: Ampere or later)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@functools.cache
def has_1x1_convs(arch: str) -> bool:
    """Whether the model has plain 1x1 convolutions (ResNet-50: 39; VGG16: none)."""
    return any(is_plain_1x1_conv(module) for module in models.build_model(arch, 10).modules())


@dataclass
class Choice:
    """The configuration picked for one model and mode, and why."""
    config: Config
    training: bool
    why: str

    def line(self) -> str:
        """'Speed (training): bf16 autocast, channels_last, 1x1 convs as matmuls (this CPU computes bf16 ...)'."""
        return f"Speed ({'training' if self.training else 'evaluation'}): {self.config.describe()} ({self.why})"


def choose(arch: str, training: bool, device: torch.device, precision: str = "auto") -> Choice:
    """The fastest configuration measured for this kind of device, model and mode, at the --precision asked for.

    Measured (docs/speed.md): channels_last always pays; bf16 autocast pays where the hardware has it; on the
    CPU, 1x1 convolutions as matrix multiplies pay in training, and in fp32 evaluation, but not in bf16 evaluation.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}.")
    if device.type == "cpu" and platform.machine() not in MEASURED_CPUS:
        config = Config("fp32" if precision == "auto" else precision, False, False)
        return Choice(config, training, f"no {platform.machine()} CPU measured yet: the course's layout")
    native = native_bf16(device)
    if precision == "auto":
        precision = "bf16" if native else "fp32"
    matmul = device.type == "cpu" and (training or precision == "fp32") and has_1x1_convs(arch)
    where = "this GPU" if device.type == "cuda" else "this CPU" if device.type == "cpu" else device.type
    why = f"{where} computes bf16 natively" if native else f"{where} has no native bf16"
    return Choice(Config(precision, True, matmul), training, f"{why}; docs/speed.md")
