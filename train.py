"""The training and evaluation loops, and a from-scratch trainer with resume.

    python train.py --model resnet50 --epochs 30 --data-dir data/cifar10-jpg --out ~/.cache/resnet50-run

Model selection uses a class-balanced validation split carved out of the
training images with a fixed seed; the test split is never looked at here.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

import utils

LOG_EVERY = 100  # steps between the course's "Epoch [..], Step [..] Loss: .." lines


def autocast(device: torch.device):
    """bf16 autocast on GPUs that support it; a no-op on CPU, where it did not pay (see bench.py)."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def progress(iterable, total: int, desc: str):
    """A progress bar on stderr, only when stderr is a terminal (logs and pipes stay clean)."""
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty())


def train_one_epoch(model, batches, optimizer, criterion, device, epoch: int, epochs: int, scheduler=None) -> tuple[float, float]:
    """One pass over `batches`; prints the course's step lines; returns the mean loss and accuracy (%)."""
    model.train()
    total_steps = len(batches)
    window_loss, window_steps, epoch_loss = 0.0, 0, 0.0
    correct, seen = torch.zeros((), dtype=torch.long, device=device), 0  # counted on the device: no sync per step
    for step, (images, labels) in enumerate(progress(batches, total_steps, f"epoch {epoch}"), start=1):
        with autocast(device):
            logits = model(images)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        loss_value = loss.item()
        if loss_value != loss_value:  # NaN: stop before the weights are ruined further
            raise utils.UserError(f"the loss became NaN at epoch {epoch}, step {step}: lower --lr and try again.")
        window_loss += loss_value
        window_steps += 1
        epoch_loss += loss_value
        if step % LOG_EVERY == 0 or step == total_steps:
            tqdm.write(f"Epoch [{epoch}/{epochs}], Step [{step}/{total_steps}] Loss: {window_loss / window_steps:.4f}")
            sys.stdout.flush()
            window_loss, window_steps = 0.0, 0
    return epoch_loss / total_steps, 100.0 * correct.item() / seen


@torch.inference_mode()
def evaluate(model, batches, device, split_name: str = "test", criterion=None) -> tuple[float, float]:
    """Accuracy (%) and mean loss on `batches`; prints the course's accuracy line."""
    model.eval()
    correct, seen, loss_sum = 0, 0, 0.0
    for images, labels in progress(batches, len(batches), "evaluating"):
        with autocast(device):
            logits = model(images)
        if criterion is not None:
            loss_sum += criterion(logits.float(), labels).item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    accuracy = 100.0 * correct / seen
    print(f"Accuracy of the model on the {split_name} images: {accuracy:.2f} %", flush=True)
    return accuracy, loss_sum / seen


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model on CIFAR-10 from scratch, choosing the best epoch on a validation split.")
    parser.add_argument("--model", choices=utils.MODELS, default="resnet50", help="architecture to train (default: resnet50)")
    parser.add_argument("--epochs", type=utils.positive_int, default=15, help="number of epochs (default: 15, the shipped checkpoint's run)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=128, help="training mini-batch size (default: 128)")
    parser.add_argument("--lr", type=utils.positive_float, default=0.2, help="peak learning rate of the one-cycle schedule (default: 0.2)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    parser.add_argument("--schedule", choices=["one-cycle", "constant"], default="one-cycle",
                        help="learning rate: one-cycle (warm up to --lr, then cosine down to ~0) or constant --lr (default: one-cycle)")
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True, help="Nesterov momentum (default: on)")
    parser.add_argument("--init", metavar="CHECKPOINT", help="start from these weights instead of random ones (e.g. the shipped checkpoint)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the loss (default: 0.1)")
    parser.add_argument("--data-dir", help="offline CIFAR-10: DIR/cifar-10-batches-py or DIR/train/<class>/ (default: download into data/)")
    parser.add_argument("--classes", help=utils.CLASSES_HELP)
    parser.add_argument("--val-per-class", type=utils.positive_int, default=500, help="training images per class held out for validation (default: 500)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed that picks the validation images (default: 0)")
    parser.add_argument("--out", default="runs/train", help="folder for last.pt, best.pt, history.json (default: runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out/last.pt")
    parser.add_argument("--export", metavar="PATH", help="instead of training: write --out/best.pt to PATH with half-precision weights "
                        "and no optimizer state (the shipped checkpoint), after checking its validation accuracy is unchanged")
    parser.add_argument("--device", help=utils.DEVICE_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling and augmentation (default: 0)")
    return parser.parse_args(argv)


def recipe_of(args) -> dict:
    """The settings that define a run; --resume refuses to mix two recipes."""
    keys = ("model", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "classes", "val_per_class", "split_seed", "seed")
    recipe = {key: getattr(args, key) for key in keys}
    recipe.update(optimizer="sgd-nesterov" if args.nesterov else "sgd", momentum=0.9, schedule=args.schedule,
                  augmentation="random-crop-4+flip")
    if args.init:
        recipe["init"] = args.init
    return recipe


def main(argv=None) -> None:
    args = parse_args(argv)
    device = utils.pick_device(args.device)
    utils.configure_backends(device)
    classes = utils.parse_classes(args.classes)
    out = Path(args.out).expanduser()
    recipe = recipe_of(args)
    if (out / "last.pt").exists() and not (args.resume or args.export):
        raise utils.UserError(f"{out} already holds a run. Pass --resume to continue it, or choose another --out.")

    images, labels = utils.load_data("train", args.data_dir, classes)
    val_index = utils.validation_indices(labels, args.val_per_class, args.split_seed)
    train_mask = torch.ones(len(labels), dtype=torch.bool)
    train_mask[val_index] = False
    print(f"Training on {int(train_mask.sum())} images, validating on {len(val_index)} (seed {args.split_seed}), device {device}", flush=True)
    train_batches = utils.Batches(images[train_mask], labels[train_mask], args.batch_size, device, train=True, seed=args.seed)
    val_batches = utils.Batches(images[val_index], labels[val_index], 500, device, train=False)
    data = f"{describe_source(args.data_dir)}, {int(train_mask.sum()):,}/{len(val_index):,} train/validation split, seed {args.split_seed}"
    if args.export:
        return export(out / "best.pt", Path(args.export), val_batches, device, data)

    utils.seed_everything(args.seed)
    model = utils.build_model(args.model, len(classes))
    # No zero-initialised last batch-norm (Goyal et al.) here: in this assignment a ReLU follows it,
    # and ReLU'(0) = 0 would leave every residual branch at zero for good.
    earlier_stages = []  # the runs this one continues (--init), so the metadata tells the whole story
    if args.init:
        init_state = utils.load_checkpoint(args.init)
        utils.load_weights(model, init_state, args.model, classes, args.init)
        earlier_stages = stages_of(init_state)
    model = utils.prepare_for_speed(model, device)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=args.nesterov, weight_decay=args.weight_decay)
    if args.schedule == "one-cycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=len(train_batches), pct_start=0.15)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    history, start_epoch, best = [], 1, 0.0

    if args.resume:
        state = utils.load_checkpoint(out / "last.pt", device)
        if state.get("recipe") != recipe:
            raise utils.UserError(f"{out / 'last.pt'} was made with another recipe ({state.get('recipe')}); resume with the same flags or use another --out.")
        utils.load_weights(model, state, args.model, classes, out / "last.pt")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        train_batches.generator.set_state(state["batches_rng"])
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch, best = state["history"], state["epoch"] + 1, state["best_accuracy"]
        print(f"Resuming {out} after epoch {state['epoch']} (best validation accuracy so far {best:.2f} %)", flush=True)

    for epoch in range(start_epoch, args.epochs + 1):
        started = time.perf_counter()
        train_loss, train_accuracy = train_one_epoch(model, train_batches, optimizer, criterion, device, epoch, args.epochs, scheduler)
        train_seconds = time.perf_counter() - started
        val_accuracy, val_loss = evaluate(model, val_batches, device, "validation", criterion)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy,
                        "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started, "train_seconds": train_seconds})
        best = max(best, val_accuracy)
        meta = {"arch": args.model, "num_classes": len(classes), "classes": list(classes), "epoch": epoch,
                "accuracy": val_accuracy, "accuracy_split": f"validation ({len(val_index)} held-out training images, seed {args.split_seed})",
                "recipe": recipe, "data": data, "stages": earlier_stages,
                "total_epochs": sum(stage["epochs"] for stage in earlier_stages) + epoch}
        full_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history, "best_accuracy": best,
                      "batches_rng": train_batches.generator.get_state(), "torch_rng": torch.get_rng_state()}
        if val_accuracy >= best:
            utils.save_checkpoint(out / "best.pt", model, meta, **full_state)
        utils.save_checkpoint(out / "last.pt", model, meta, **full_state)
        utils.write_atomically(out / "history.json", json.dumps(history, indent=1).encode())
        print(f"epoch {epoch}: train loss {train_loss:.4f}, validation loss {val_loss:.4f}, "
              f"validation accuracy {val_accuracy:.2f} % (best {best:.2f} %), {history[-1]['seconds']:.0f} s", flush=True)


def stages_of(checkpoint: dict) -> list[dict]:
    """The training stages behind a checkpoint: its own earlier stages, then itself."""
    own = {key: checkpoint[key] for key in ("recipe", "accuracy", "history") if key in checkpoint}
    return checkpoint.get("stages", []) + [own | {"epochs": checkpoint.get("epoch", 0)}]


def whole_history(checkpoint: dict, history: list[dict]) -> list[dict]:
    """`history` of a run preceded by its earlier stages' histories, epochs numbered on from one stage to the next."""
    rows, offset = [], 0
    for stage in checkpoint.get("stages", []):
        rows += [row | {"epoch": row["epoch"] + offset} for row in stage.get("history", [])]
        offset += stage["epochs"]
    return rows + [row | {"epoch": row["epoch"] + offset} for row in history]


def describe_source(data_dir) -> str:
    """Words for the metadata: which copy of CIFAR-10 a run trained on."""
    if data_dir and any(Path(data_dir, "train").glob("*/*.jp*g")):
        return f"JPEG copy of the CIFAR-10 training split ({data_dir})"
    return f"CIFAR-10 training split ({data_dir or 'torchvision download'})"


def export(best_path: Path, target: Path, val_batches, device, data: str) -> None:
    """Write a small copy of a run's best checkpoint (fp16 weights, no training state) after checking it."""
    state = utils.load_checkpoint(best_path, device)
    model = utils.build_model(state["arch"], state["num_classes"])
    utils.load_weights(model, state, state["arch"], tuple(state["classes"]), best_path)
    model = utils.prepare_for_speed(model, device)
    full, _ = evaluate(model, val_batches, device, "validation")
    keys = ("arch", "num_classes", "classes", "epoch", "total_epochs", "accuracy", "accuracy_split", "recipe", "stages")
    meta = {key: state[key] for key in keys if key in state} | {"data": data, "history": state.get("history", [])}
    utils.save_checkpoint(target.with_name(target.name + ".check"), model, meta, half=True)
    small = utils.load_checkpoint(target.with_name(target.name + ".check"), device)
    utils.load_weights(model, small, state["arch"], tuple(state["classes"]), target)
    half, _ = evaluate(model, val_batches, device, "validation")
    if abs(half - full) > 0.1:
        target.with_name(target.name + ".check").unlink()
        raise utils.UserError(f"half precision changes the validation accuracy from {full:.2f} % to {half:.2f} %; not exported.")
    target.with_name(target.name + ".check").replace(target)
    print(f"Exported epoch {state['epoch']} to {target} ({target.stat().st_size / 1e6:.1f} MB): validation accuracy "
          f"{full:.2f} % in float32, {half:.2f} % after the half-precision round trip")


def run_cli(entry, argv=None) -> None:
    """Run a command-line entry point; a UserError becomes one clear line and exit code 2."""
    try:
        entry(argv)
    except utils.UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_cli(main)
