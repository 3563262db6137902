"""The shipped checkpoint: a run's best weights in half precision, without training state, checked before it is
written (`python train.py ... --export PATH`)."""
import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from course import models, speed
from course.cli import UserError
from course.loops import evaluate


def export_checkpoint(best_path: Path, target: Path, val_batches, device, config: speed.Config, data: str) -> None:
    """Write a small copy of a run's best checkpoint (fp16 weights, no training state) after checking it.

    Both accuracies are computed in fp32 whatever the run's precision, so that they differ only by the fp16
    storage and the file's recorded `shipped_accuracy` does not depend on the CPU that exported it."""
    config = replace(config, precision="fp32")
    model, state = models.load_trained(best_path, device=device)
    model = speed.prepare(model, device, config)
    full = evaluate(model, val_batches, device, config).accuracy
    keys = ("arch", "num_classes", "classes", "epoch", "total_epochs", "accuracy", "accuracy_split", "recipe", "stages")
    meta = {key: state[key] for key in keys if key in state} | {"data": data, "history": state.get("history", [])}
    check = target.with_name(target.name + ".check")
    models.save_checkpoint(check, model, meta, half=True)
    small = models.load_checkpoint(check, device)
    models.load_weights(model, small, state["arch"], tuple(state["classes"]), target)
    half = evaluate(model, val_batches, device, config).accuracy
    check.unlink()
    if abs(half - full) > 0.1:
        raise UserError(f"half precision changes the validation accuracy from {full:.2f} % to {half:.2f} %; "
                               "not exported.")
    models.save_checkpoint(target, model, meta | {"shipped_accuracy": half}, half=True)  # the file's own accuracy
    print(f"Exported epoch {state['epoch']} to {target} ({target.stat().st_size / 1e6:.1f} MB): validation accuracy "
          f"{full:.2f} % with float32 weights, {half:.2f} % after the half-precision round trip "
          "(both computed in fp32)")


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every convolution that feeds a batch-norm directly (the two follow each other in an nn.Sequential)."""
    pairs = []
    for sequential in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        children = list(sequential)
        pairs += [(conv, norm) for conv, norm in zip(children, children[1:], strict=False)
                  if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                  and norm.num_features == conv.out_channels]
    return pairs


@torch.no_grad()
def scale_up_convolutions(model: nn.Module, target_rms: float = 0.5, var_limit: float = 2.0 ** 14) -> list[float]:
    """Make each convolution that feeds a batch-norm k times larger without changing what the model computes.

    A batch-norm divides by the spread of its input, so scaling a convolution's weights and bias by k, the
    batch-norm's running mean by k and running variance by k^2 changes nothing, once the batch-norm's scale
    absorbs the eps added to the variance: gamma' = gamma * sqrt(k^2 var + eps) / (k sqrt(var + eps)).
    Trained with weight decay, the weights end up tiny (RMS ~0.005), and Adam, which moves every weight by
    about its lr per step whatever the gradient, wrecks them at lr 1e-3 (the course's loop); k brings each
    convolution's RMS to about `target_rms`. The running variance times k^2 stays below `var_limit`, well
    inside half precision's 65,504. Returns each convolution's k, in order.
    """
    factors = []
    for conv, norm in conv_bn_pairs(model):
        rms = conv.weight.float().pow(2).mean().sqrt().item()
        k = max(1.0, min(target_rms / max(rms, 1e-12), math.sqrt(var_limit / norm.running_var.max().item())))
        eps = norm.eps
        conv.weight.mul_(k)
        if conv.bias is not None:
            conv.bias.mul_(k)
        norm.weight.mul_(torch.sqrt(k * k * norm.running_var + eps) / (k * torch.sqrt(norm.running_var + eps)))
        norm.running_mean.mul_(k)
        norm.running_var.mul_(k * k)
        factors.append(k)
    return factors

