"""Train the distillation teacher: airbench's small network and recipe (Keller Jordan, cifar10-airbench), on CPU.

    python -m tools.train_teacher --data-dir data/cifar10-jpg --out ~/.cache/resnet50-cifar10/teacher-airbench94

airbench94 reaches 94 % on CIFAR-10's test split in about 10 epochs of a 2-million-parameter network. Here it
trains on the same 45,000 / 5,000 split of the JPEG copy as the ResNet-50 (500 a class held out, seed 0), with
the project's normalization, so that it sees exactly the student's inputs. Every trick is airbench's and named in
HYP; the state is saved after every epoch and `--resume` goes on from it. The final weights are written as an
ordinary checkpoint of `--model airbench` (models.build_model), which `train.py --teacher` loads.
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import utils
from course import cli, models
from course.airbench import AirbenchNet, init_whitening, predict_with_tta

HYP = {
    "epochs": 10,  # airbench94: 9.9 epochs of 50,000 images; here whole epochs of 45,000
    "batch_size": 1024,
    "lr": 11.5,  # per 1024 examples, decoupled from momentum (airbench's convention; see sgd_groups)
    "momentum": 0.85,  # Nesterov
    "weight_decay": 0.0153,  # per 1024 examples, decoupled from the learning rate
    "bias_scaler": 64.0,  # batch-norm biases learn 64x faster (not decayed faster)
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,  # the whitening layer's bias learns for 3 epochs, then is frozen
    "translate": 2,  # random translation by up to 2 pixels, reflection padding
    "lookahead_every": 5,  # every 5 steps the weights are pulled towards their running average...
    "lookahead_decay": 0.95 ** 5,  # ...whose decay grows as (step / total)^3 up to this
    "warmup": 0.23,  # learning rate: linear 0.2 -> 1 over 23 % of the steps, then linear down to 0.07
    "tta_level": 2,  # validation: 0 = none, 1 = mirror, 2 = mirror and 1-pixel translations
}


def sgd_groups(model: nn.Module, hyp: dict) -> torch.optim.SGD:
    """airbench's SGD: the loss is a sum over the batch, so lr and decay are per 1024 examples."""
    kilostep = 1024 * (1 + 1 / (1 - hyp["momentum"]))
    lr = hyp["lr"] / kilostep
    wd = hyp["weight_decay"] * hyp["batch_size"] / kilostep
    lr_biases = lr * hyp["bias_scaler"]
    norm_biases = [p for name, p in model.named_parameters() if "norm" in name and p.requires_grad]
    others = [p for name, p in model.named_parameters() if "norm" not in name and p.requires_grad]
    groups = [dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
              dict(params=others, lr=lr, weight_decay=wd / lr)]
    return torch.optim.SGD(groups, momentum=hyp["momentum"], nesterov=True)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """airbench's triangle: 0.2 -> 1 over the warm-up, then down to 0.07 at the end."""
    warmup_steps = int(total * warmup)
    if step < warmup_steps:
        return 0.2 + 0.8 * step / warmup_steps
    return 1.0 - 0.93 * (step - warmup_steps) / (total - warmup_steps)


def epoch_images(padded: torch.Tensor, flipped_once: torch.Tensor, epoch: int, size: int,
                 generator: torch.Generator) -> torch.Tensor:
    """This epoch's augmented copy of the training set.

    Alternating flip (airbench): each image is flipped at random in epoch 0, then the other way round in every
    odd epoch, so each image is seen both ways in any two consecutive epochs. Translation: a random crop of the
    reflection-padded image.
    """
    n, pad2 = len(padded), padded.shape[-1] - size
    dy = torch.randint(0, pad2 + 1, (n,), generator=generator)
    dx = torch.randint(0, pad2 + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(size))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(size))[:, None, None, :]
    crops = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
    flip = flipped_once if epoch % 2 == 0 else ~flipped_once
    return torch.where(flip[:, None, None, None], crops.flip(-1), crops)


class Lookahead:
    """A running average of the weights (buffers included) that the weights are pulled back to (airbench)."""

    def __init__(self, model: nn.Module):
        self.average = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for key, average in self.average.items():
            average.lerp_(state[key], 1 - decay)
            state[key].copy_(average)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train airbench's network as the distillation teacher, on the "
                                     "training split less its validation images; resumable after every epoch.")
    parser.add_argument("--data-dir", required=True, help="image folder with train/<class>/ (the JPEG copy)")
    parser.add_argument("--out", required=True, help="folder for state.pt (resume), final.pt and history.json")
    parser.add_argument("--epochs", type=cli.positive_int, default=HYP["epochs"],
                        help=f"epochs (default: {HYP['epochs']})")
    parser.add_argument("--val-per-class", type=cli.positive_int, default=500,
                        help="training images per class held out for validation (default: 500)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed that picks the validation images (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and augmentation (default: 0)")
    parser.add_argument("--resume", action="store_true", help="go on from --out/state.pt")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    hyp = HYP | {"epochs": args.epochs}
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    classes = utils.parse_classes(None)
    started = time.perf_counter()
    images, labels = utils.load_data("train", args.data_dir, classes)
    val_index = utils.validation_indices(labels, args.val_per_class, args.split_seed)
    train_mask = torch.ones(len(labels), dtype=torch.bool)
    train_mask[val_index] = False
    mean, std = torch.tensor(utils.MEAN).view(1, 3, 1, 1), torch.tensor(utils.STD).view(1, 3, 1, 1)
    train_x = utils.normalize(images[train_mask], mean, std, channels_last=False)
    train_y = labels[train_mask]
    val_x = utils.normalize(images[val_index], mean, std)
    val_y = labels[val_index]
    print(f"Data: {len(train_y)} training and {len(val_y)} validation images, {time.perf_counter() - started:.1f} s",
          flush=True)

    generator = torch.Generator().manual_seed(args.seed)
    model = AirbenchNet(len(classes))
    init_whitening(model.whiten, train_x[:5000])
    model = model.to(memory_format=torch.channels_last)
    optimizer = sgd_groups(model, hyp)
    steps_per_epoch = len(train_y) // hyp["batch_size"]  # the last, partial batch is dropped
    total_steps = steps_per_epoch * hyp["epochs"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, hyp["warmup"]))
    lookahead = Lookahead(model)
    flipped_once = torch.rand(len(train_y), generator=generator) < 0.5
    padded = F.pad(train_x, (hyp["translate"],) * 4, mode="reflect")
    criterion = nn.CrossEntropyLoss(label_smoothing=hyp["label_smoothing"], reduction="sum")
    history, start_epoch = [], 0
    state_path = out / "state.pt"
    if args.resume:
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        lookahead.average = state["lookahead"]
        generator.set_state(state["generator"])
        history, start_epoch = state["history"], state["epoch"]
        print(f"Resuming after epoch {start_epoch}", flush=True)
    elif state_path.exists():
        raise cli.UserError(f"{state_path} exists: add --resume to go on with that run, or pick another --out.")
    alpha = lambda step: hyp["lookahead_decay"] * (step / total_steps) ** 3  # noqa: E731

    for epoch in range(start_epoch, hyp["epochs"]):
        epoch_started = time.perf_counter()
        model.train()
        model.whiten.bias.requires_grad_(epoch < hyp["whiten_bias_epochs"])
        epoch_x = epoch_images(padded, flipped_once, epoch, train_x.shape[-1], generator)
        order = torch.randperm(len(train_y), generator=generator)
        loss_sum, correct = 0.0, 0
        for i in range(steps_per_epoch):
            index = order[i * hyp["batch_size"]:(i + 1) * hyp["batch_size"]]
            inputs = epoch_x[index].contiguous(memory_format=torch.channels_last)
            logits = model(inputs)
            loss = criterion(logits, train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step = epoch * steps_per_epoch + i + 1
            if step % hyp["lookahead_every"] == 0:
                lookahead.update(model, alpha(step))
            loss_sum += loss.item()
            correct += (logits.argmax(1) == train_y[index]).sum().item()
        if epoch == hyp["epochs"] - 1:
            lookahead.update(model, 1.0)  # the final weights are the average
        train_seconds = time.perf_counter() - epoch_started
        last = epoch == hyp["epochs"] - 1
        tta = hyp["tta_level"] if last else 0  # test-time augmentation costs 6 passes: only for the final weights
        accuracy = tta_accuracy(model, val_x, val_y, tta)
        seen = steps_per_epoch * hyp["batch_size"]
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": 100 * correct / seen,
               "val_accuracy": accuracy, "tta_level": tta, "lr": optimizer.param_groups[1]["lr"],
               "train_seconds": train_seconds, "seconds": time.perf_counter() - epoch_started}
        history.append(row)
        if last:  # airbench's weights are the final average, not a pick among epochs
            meta = {"arch": "airbench", "num_classes": len(classes), "classes": list(classes), "epoch": epoch + 1,
                    "total_epochs": epoch + 1, "accuracy": accuracy, "recipe": hyp | {"seed": args.seed},
                    "accuracy_split": f"validation ({len(val_y)} held-out training images, seed {args.split_seed}), "
                                      f"with test-time augmentation level {tta}"}
            models.save_checkpoint(out / "final.pt", model, meta)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "lookahead": lookahead.average, "generator": generator.get_state(), "history": history,
                 "epoch": epoch + 1}
        with cli.atomic_file(state_path) as tmp:
            torch.save(state, tmp)
        cli.write_atomically(out / "history.json", json.dumps(history, indent=1))
        print(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}, train accuracy {row['train_accuracy']:.2f} %, "
              f"validation {accuracy:.2f} % (TTA level {tta}), {row['seconds']:.0f} s", flush=True)


@torch.inference_mode()
def tta_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, tta_level: int) -> float:
    """Accuracy (%) with airbench's test-time augmentation."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), 1000):
        logits = predict_with_tta(model, images[start:start + 1000], tta_level)
        correct += (logits.argmax(1) == labels[start:start + 1000]).sum().item()
    return 100.0 * correct / len(labels)


if __name__ == "__main__":
    cli.run_cli(main)
