"""Pick, on the machine at hand, the fastest way to run a model: precision, memory layout, 1x1 convolutions.

What is fastest differs from CPU to CPU (bf16 autocast is 1.9x faster on an AMD EPYC
with AVX512_BF16 and 20x slower on one without it), and between training and
evaluation. So, like `cudnn.benchmark` for convolution algorithms, `choose` times a
few steps of each candidate on synthetic data for the model and batch size at hand,
keeps the fastest, and caches the choice in a small JSON file (see `cache_path`), so
a second run pays nothing. None of this changes what the model computes beyond float
rounding: `fp32` means no reduced precision anywhere.

    choice = speed.choose("resnet50", 10, batch_size=100, training=True, device=device)
    print(choice.line())            # Speed (training): fp32, channels_last, ... (1.34x ...; cached)
    model = speed.prepare(model, device, choice.config)
    with speed.autocast(device, choice.config): ...
"""
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from course import cli, models

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = ("auto (default): time fp32 and, where the hardware has it, bf16 autocast, and use the faster; "
                  "fp32: no reduced precision anywhere (no autocast, no TF32); bf16: bf16 autocast")
RETUNE_HELP = "time the candidates again instead of using the cached choice (do it on a quiet machine)"
CACHE_VERSION = 2  # 2: no "1x1 convs as matmuls" choice for a model without 1x1 convolutions


@dataclass(frozen=True)
class Config:
    """One way to run a model. precision: 'fp32', 'tf32' (CUDA matmuls and convolutions) or 'bf16' (autocast)."""
    precision: str
    channels_last: bool
    matmul_1x1: bool

    def describe(self) -> str:
        """'bf16 autocast, channels_last, 1x1 convs as matmuls'."""
        words = {"fp32": "fp32", "tf32": "TF32", "bf16": "bf16 autocast"}[self.precision]
        words += ", channels_last" if self.channels_last else ", NCHW"
        return words + (", 1x1 convs as matmuls" if self.matmul_1x1 else "")


COURSE_WAY = Config("fp32", channels_last=False, matmul_1x1=False)  # the course's loop: the baseline of every speedup


# ---------------------------------------------------------- applying a config

class MatmulConv1x1(nn.Conv2d):
    """A 1x1 convolution computed as one matrix multiply: same weights, same result up to rounding.

    On some CPUs oneDNN is slow for 1x1 convolutions on the tiny 2x2 and 4x4 maps of
    this network, and a plain matrix multiply is faster; `choose` measures whether.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1):
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
        out = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return out.permute(0, 3, 1, 2)


def is_plain_1x1_conv(module: nn.Module) -> bool:
    """Whether `module` is a 1x1 convolution that MatmulConv1x1 can compute (no padding, no groups)."""
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.padding == (0, 0)
            and module.groups == 1)


def use_matmul_for_1x1_convs(model: nn.Module) -> nn.Module:
    """Make every plain 1x1 convolution of `model` a MatmulConv1x1, in place (same parameters, same state_dict).

    Done by changing each module's class, so the student's resnet.py stays free of speed tricks.
    """
    for module in model.modules():
        if is_plain_1x1_conv(module):
            module.__class__ = MatmulConv1x1
    return model


def use_plain_1x1_convs(model: nn.Module) -> nn.Module:
    """Undo `use_matmul_for_1x1_convs`, in place."""
    for module in model.modules():
        if type(module) is MatmulConv1x1:
            module.__class__ = nn.Conv2d
    return model


def prepare(model: nn.Module, device: torch.device, config: Config) -> nn.Module:
    """Move `model` to `device` the way `config` says (in place; parameters stay the same objects).

    Sets the process-wide TF32 switches on CUDA. Calling it again with another config switches over.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = config.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = config.precision == "tf32"
    if config.matmul_1x1:
        use_matmul_for_1x1_convs(model)
    else:
        use_plain_1x1_convs(model)
    return model.to(device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)


def autocast(device: torch.device, config: Config):
    """bf16 autocast when the config says so; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


# ------------------------------------------------------------------ candidates

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


def candidates(device: torch.device, precision: str) -> list[Config]:
    """The configurations worth timing for a --precision request on this device."""
    if precision == "auto":
        precisions = ["fp32", "tf32"] if device.type == "cuda" else ["fp32"]
        if native_bf16(device):
            precisions.append("bf16")
    else:
        precisions = [precision]
    if device.type == "cpu":
        return [Config(p, True, matmul) for p in precisions for matmul in (False, True)]
    return [Config(p, True, False) for p in precisions]


# ----------------------------------------------------------------------- cache

def cache_path() -> Path:
    """The JSON file of past choices: $XDG_CACHE_HOME (or ~/.cache)/resnet50-cifar10/speed.json."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnet50-cifar10" / "speed.json"


def hardware() -> dict:
    """What the choice depends on: the CPU (vendor, family, model, bf16/AMX flags) or the GPU, threads, torch."""
    facts = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        flags = set(fields.get("flags", "").split())
        facts |= {"vendor": fields.get("vendor_id"), "family": fields.get("cpu family"), "model": fields.get("model"),
                  "cpu": fields.get("model name"), "avx512_bf16": "avx512_bf16" in flags,
                  "amx_bf16": "amx_bf16" in flags}
    except OSError:  # not Linux: the processor string is the best we have
        facts["cpu"] = platform.processor() or platform.machine()
    return facts


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return hardware().get("cpu") or device.type


def cache_key(arch: str, batch_size: int, training: bool, precision: str, device: torch.device) -> str:
    """One string for everything the fastest configuration depends on."""
    facts = hardware() | {"device": device_name(device) if device.type != "cpu" else "cpu"}
    facts |= {"arch": arch, "batch_size": batch_size, "mode": "train" if training else "eval", "precision": precision}
    return json.dumps(facts, sort_keys=True)


def read_cache() -> dict:
    """Past choices, or {} when the file is missing, damaged or from another version."""
    try:
        content = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return content.get("choices", {}) if content.get("version") == CACHE_VERSION else {}


def write_cache(choices: dict) -> None:
    """Store the choices; a cache that cannot be written only costs a re-measurement next time."""
    try:
        cli.write_atomically(cache_path(), json.dumps({"version": CACHE_VERSION, "choices": choices}, indent=1))
    except OSError:
        pass


# ---------------------------------------------------------------------- timing

def images_per_second(model: nn.Module, config: Config, batch_size: int, training: bool, device: torch.device,
                      too_slow: float = float("inf")) -> float:
    """Time a few steps of `model` prepared as `config`, on synthetic data: a warm-up, then up to 3 steps or 1 s.

    Training steps change the model's weights: time a throwaway copy, never the model being trained.
    """
    model = prepare(model, device, config)
    model.train(training)
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    images = images.contiguous(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> float:
        started = time.perf_counter()
        with torch.inference_mode(not training), autocast(device, config):
            loss = model(images).float().logsumexp(1).mean()  # any scalar of the logits does for timing
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    times = [step()]  # warm-up: oneDNN and cuDNN pick their kernels here
    if times[0] > too_slow * batch_size:  # hopeless (e.g. bf16 without hardware support): do not waste more time
        return batch_size / times[0]
    times = []
    while len(times) < 3 and sum(times) < 1.0:
        times.append(step())
    return batch_size / min(times)


@dataclass
class Choice:
    """The configuration picked for one (model, batch size, mode), and why."""
    config: Config
    training: bool
    speedup: float  # against the course's fp32 NCHW way, measured on this machine
    how: str  # 'cached', 'measured in 4.6 s' or 'fixed'
    rates: dict  # images/s of each candidate timed, by description
    skipped: str = ""

    def line(self) -> str:
        """'Speed (training): bf16 autocast, channels_last (1.90x the course's fp32 NCHW here; cached)'."""
        why = f"{self.speedup:.2f}x the course's fp32 NCHW here; {self.how}" if self.speedup else self.how
        mode = "training" if self.training else "evaluation"
        return f"Speed ({mode}): {self.config.describe()} ({why}){'; ' + self.skipped if self.skipped else ''}"


def choose(arch: str, num_classes: int, batch_size: int, training: bool, device: torch.device,
           precision: str = "auto", retune: bool = False) -> Choice:
    """The fastest candidate for this model, batch size, mode and --precision: from the cache, or timed now."""
    if precision not in PRECISIONS + ("tf32",):
        raise cli.UserError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}.")
    skipped = "" if precision != "auto" or native_bf16(device) or device.type != "cpu" else \
        "bf16 not tried: this CPU has no native bf16 (AVX512_BF16 or AMX)"
    options = candidates(device, precision)
    if precision in ("auto", "fp32"):
        options.append(COURSE_WAY)  # never slower than the course's way
    if device.type == "mps" or len(options) == 1:
        return Choice(options[0], training, 0.0, "fixed", {}, skipped)
    key = cache_key(arch, batch_size, training, precision, device)
    choices = read_cache()
    if not retune and key in choices:
        saved = choices[key]
        return Choice(Config(**saved["config"]), training, saved["speedup"], "cached", saved["rates"], skipped)

    started = time.perf_counter()
    torch.manual_seed(0)
    model = models.build_model(arch, num_classes)  # one throwaway model, switched from one config to the next
    if not any(is_plain_1x1_conv(module) for module in model.modules()):  # VGG16: the same network twice
        options = [config for config in options if not config.matmul_1x1]
    baseline = images_per_second(model, COURSE_WAY, batch_size, training, device)
    rates = {COURSE_WAY.describe(): baseline}
    for config in options[:-1] if options[-1] == COURSE_WAY else options:
        best = max(rates.values())
        rates[config.describe()] = images_per_second(model, config, batch_size, training, device, too_slow=10 / best)
    fastest = max(options, key=lambda config: rates[config.describe()])
    speedup = rates[fastest.describe()] / baseline
    choices[key] = {"config": asdict(fastest), "speedup": speedup, "rates": rates,
                    "measured": time.strftime("%Y-%m-%d")}
    write_cache(choices)
    return Choice(fastest, training, speedup, f"measured in {time.perf_counter() - started:.1f} s", rates, skipped)
