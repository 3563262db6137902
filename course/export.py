"""The shipped checkpoint: a run's best weights in half precision, without training state, checked before it is
written (`python train.py ... --export PATH`)."""
from dataclasses import replace
from pathlib import Path

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


