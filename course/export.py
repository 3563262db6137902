"""The shipped checkpoint: a run's best weights in half precision, without training state, with its convolutions
scaled up so that Adam at the course's lr cannot wreck them, checked before it is written
(`python train.py ... --export PATH`)."""
import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from course import models, speed
from course.cli import UserError
from course.loops import evaluate


def export_checkpoint(best_path: Path, target: Path, val_batches, device, config: speed.Config, data: str) -> None:
    """Write a small copy of a run's best checkpoint (fp16 weights, no training state, convolutions scaled up by
    `scale_up_convolutions`) after checking that it computes what the run's weights compute.

    `best_path` may also be a shipped file: exporting it again gives the same scaling. Both accuracies
    are computed in fp32 whatever the run's precision, so that they differ only by the scaling and the fp16 storage,
    and the file's recorded `shipped_accuracy` does not depend on the CPU that exported it."""
    config = replace(config, precision="fp32")
    model, state = models.load_trained(best_path, device=device)
    undo_scale_up(model, state)  # a shipped file exported again: start from the size training left
    full = evaluate(speed.prepare(model, device, config), val_batches, device, config).accuracy
    factors = scale_up_convolutions(model)
    keys = ("arch", "num_classes", "classes", "epoch", "total_epochs", "accuracy", "accuracy_split", "recipe", "stages")
    meta = {key: state[key] for key in keys if key in state} | {"data": data, "history": state.get("history", [])}
    meta["scaled_up"] = {"target_rms": SCALED_RMS, "factors": factors}
    check = target.with_name(target.name + ".check")
    models.save_checkpoint(check, model, meta, half=True)
    small = models.load_checkpoint(check, device)
    models.load_weights(model, small, state["arch"], tuple(state["classes"]), target)
    half = evaluate(model, val_batches, device, config).accuracy
    check.unlink()
    if abs(half - full) > 0.1:
        raise UserError(f"scaling up and half precision change the validation accuracy from {full:.2f} % to "
                        f"{half:.2f} %; not exported.")
    models.save_checkpoint(target, model, meta | {"shipped_accuracy": half}, half=True)  # the file's own accuracy
    scaled = f"k = {min(factors):.0f} to {max(factors):.0f}" if factors else "none feeds a batch-norm: k = 1"
    print(f"Exported epoch {state['epoch']} to {target} ({target.stat().st_size / 1e6:.1f} MB): validation accuracy "
          f"{full:.2f} % with the run's float32 weights, {half:.2f} % after scaling the convolutions up "
          f"({scaled}) and the half-precision round trip (both computed in fp32)")


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every convolution that feeds a batch-norm directly (the two follow each other in an nn.Sequential)."""
    pairs = []
    for sequential in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        children = list(sequential)
        pairs += [(conv, norm) for conv, norm in zip(children, children[1:], strict=False)
                  if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                  and norm.num_features == conv.out_channels]
    return pairs


SCALED_RMS = 0.5  # a convolution's RMS after the export: Adam's ~1e-3 steps are then 0.2 % of a weight


def scale_up_convolutions(model: nn.Module, target_rms: float = SCALED_RMS,
                          var_limit: float = 2.0 ** 14) -> list[float]:
    """Make each convolution that feeds a batch-norm k times larger without changing what the model computes.

    Trained with weight decay, the weights end up tiny (RMS ~0.005), and Adam, which moves every weight by about
    its lr per step whatever the gradient, wrecks them at lr 1e-3 (the course's loop); k brings each
    convolution's RMS to about `target_rms`. The running variance times k^2 stays below `var_limit`, well inside
    half precision's 65,504. Returns each convolution's k, in order (recorded in the file: see `undo_scale_up`).
    """
    factors = []
    for conv, norm in conv_bn_pairs(model):
        rms = conv.weight.float().pow(2).mean().sqrt().item()
        factors.append(max(1.0, min(target_rms / max(rms, 1e-12),
                                    math.sqrt(var_limit / norm.running_var.max().item()))))
    rescale_convolutions(model, factors)
    return factors


def undo_scale_up(model: nn.Module, checkpoint: dict) -> None:
    """Bring a shipped model's convolutions back to the size training left them (when the file scaled them up).

    SGD's steps, unlike Adam's, shrink relative to a weight as the weight grows (by k^2, since a batch-norm
    follows): training further from the scaled-up file (train.py --init) would barely move the convolutions."""
    if "scaled_up" in checkpoint:
        rescale_convolutions(model, [1 / k for k in checkpoint["scaled_up"]["factors"]])


@torch.no_grad()
def rescale_convolutions(model: nn.Module, factors: list[float]) -> None:
    """Multiply each convolution that feeds a batch-norm by its factor k, keeping what the model computes.

    A batch-norm divides by the spread of its input, so scaling a convolution's weights and bias by k, the
    batch-norm's running mean by k and running variance by k^2 changes nothing, once the batch-norm's scale
    absorbs the eps added to the variance: gamma' = gamma * sqrt(k^2 var + eps) / (k sqrt(var + eps)).
    """
    pairs = conv_bn_pairs(model)
    if len(factors) != len(pairs):
        raise ValueError(f"{len(factors)} factors for {len(pairs)} convolutions")
    for (conv, norm), k in zip(pairs, factors, strict=True):
        eps = norm.eps
        conv.weight.mul_(k)
        if conv.bias is not None:
            conv.bias.mul_(k)
        norm.weight.mul_(torch.sqrt(k * k * norm.running_var + eps) / (k * torch.sqrt(norm.running_var + eps)))
        norm.running_mean.mul_(k)
        norm.running_var.mul_(k * k)
