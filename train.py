"""The training and evaluation loops, and a from-scratch trainer with resume.

    python train.py --model resnet50 --epochs 30 --data-dir data/cifar10-jpg --out ~/.cache/resnet50-run
    torchrun --standalone --nproc_per_node 2 train.py ...     # data-parallel: distributed.py, docs/training.md

Model selection uses a class-balanced validation split carved out of the
training images with a fixed seed; the test split is never looked at here.
The loops return their numbers; the callers print the course's lines.
"""
import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

import common
import distill
import distributed
import resume
import speed
import utils

# The recipe values main.py, train.py and bench.py share.
LOG_EVERY = 100  # steps between the course's "Epoch [..], Step [..] Loss: .." lines
EVAL_BATCH_SIZE = 500  # evaluation only: no gradients, so a large batch is cheap
MOMENTUM = 0.9  # SGD momentum everywhere in this project


# ---------------------------------------------------------------------- loops

class Progress:
    """A tqdm bar on a terminal; elsewhere (a log, a notebook) a short line at every tenth of the loop."""

    def __init__(self, total: int, desc: str, batch_size: int):
        self.total, self.desc, self.batch_size = total, desc, batch_size
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=not self.terminal)
        self.started, self.next_tenth = time.perf_counter(), 1

    def update(self, step: int) -> None:
        """Advance to `step` (1-based); prints '  .. epoch 1: 45/450 steps (10 %), 210 img/s, 3 min 13 s left'."""
        self.bar.update(1)
        if self.terminal or step < self.next_tenth * self.total / 10:
            return
        while step >= self.next_tenth * self.total / 10:
            self.next_tenth += 1
        elapsed = time.perf_counter() - self.started
        rate = step * self.batch_size / elapsed
        left = common.format_seconds(elapsed / step * (self.total - step))
        print(f"  .. {self.desc}: {step}/{self.total} steps ({100 * step // self.total} %), "
              f"{rate:.0f} img/s, {left} left", flush=True)

    def close(self) -> None:
        self.bar.close()


def course_step_line(epoch: int, epochs: int, step: int, total_steps: int, loss: float) -> str:
    """The course's step line, byte for byte."""
    return f"Epoch [{epoch}/{epochs}], Step [{step}/{total_steps}] Loss: {loss:.4f}"


def train_one_epoch(model, batches, optimizer, criterion, device, epoch: int, epochs: int, scheduler=None,
                    config: speed.Config = speed.COURSE_WAY, ema: AveragedModel | None = None,
                    quiet: bool = False, teacher: nn.Module | None = None) -> tuple[float, float]:
    """One pass over `batches`; prints the course's step lines (unless quiet); returns the mean loss and
    accuracy (%). With a teacher, `criterion` is a distill.Distillation and also gets the teacher's logits."""
    model.train()
    total_steps = len(batches)
    window_loss, window_steps, epoch_loss = 0.0, 0, 0.0
    correct, seen = torch.zeros((), dtype=torch.long, device=device), 0  # counted on the device: no sync per step
    progress = Progress(total_steps, f"epoch {epoch}", batches.batch_size * distributed.world_size())
    for step, (images, labels) in enumerate(batches, start=1):
        with speed.autocast(device, config):
            logits = model(images)
            if teacher is None:
                loss = criterion(logits, labels)
            else:
                with torch.no_grad():  # the teacher only gives targets: no graph, no gradients
                    targets = teacher(images)  # on the same augmented batch as the student
                loss = criterion(logits, labels, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        loss_value = loss.item()
        if loss_value != loss_value:  # NaN: stop before the weights are ruined further
            progress.close()
            raise common.UserError(f"the loss became NaN at epoch {epoch}, step {step}: lower --lr and try again.")
        window_loss += loss_value
        window_steps += 1
        epoch_loss += loss_value
        if (step % LOG_EVERY == 0 or step == total_steps) and not quiet:
            tqdm.write(course_step_line(epoch, epochs, step, total_steps, window_loss / window_steps))
            sys.stdout.flush()
            window_loss, window_steps = 0.0, 0
        if not quiet:
            progress.update(step)
    progress.close()
    # under torchrun, every rank's share of the epoch (one process: the numbers themselves)
    epoch_loss, correct, seen, total_steps = distributed.sum_over_ranks([epoch_loss, correct.item(), seen, total_steps],
                                                                        device)
    return epoch_loss / total_steps, 100.0 * correct / seen


@dataclass
class Evaluation:
    """What `evaluate` measured: accuracy (%), mean loss (nan without a criterion) and every prediction."""
    accuracy: float
    loss: float
    predictions: torch.Tensor


@torch.inference_mode()
def evaluate(model, batches, device, config: speed.Config = speed.COURSE_WAY, criterion=None) -> Evaluation:
    """Accuracy, loss and predictions of `model` on `batches`, in order. Prints nothing."""
    model.eval()
    correct, seen, loss_sum, predictions = 0, 0, 0.0, []
    progress = Progress(len(batches), "evaluating", batches.batch_size)
    for _step, (images, labels) in enumerate(batches, start=1):
        with speed.autocast(device, config):
            logits = model(images)
        if criterion is not None:
            loss_sum += criterion(logits.float(), labels).item() * len(labels)
        predictions.append(logits.argmax(1).cpu())
        correct += (predictions[-1] == labels.cpu()).sum().item()
        seen += len(labels)
        progress.bar.update(1)
    progress.close()
    return Evaluation(100.0 * correct / seen, loss_sum / seen if criterion is not None else float("nan"),
                      torch.cat(predictions))


def accuracy_line(accuracy: float, split_name: str = "test") -> str:
    """The course's accuracy line, byte for byte."""
    return f"Accuracy of the model on the {split_name} images: {accuracy:.2f} %"


# ------------------------------------------------------------ training steps

def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, nesterov: bool = False):
    """SGD with momentum (Nesterov or not) or Adam."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=nesterov, weight_decay=weight_decay)


def build_schedule(optimizer, schedule: str, lr: float, epochs: int, steps_per_epoch: int):
    """one-cycle (warm up to lr over 15 %, then cosine down to ~0), cosine (from lr down to 0, no warm-up: for
    fine-tuning a converged model) or a constant lr; stepped once per batch."""
    if schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                                   pct_start=0.15)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights and batch-norm statistics (None when decay is 0)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model on CIFAR-10 from scratch (or from --init), "
                                     "choosing the best epoch on a validation split.")
    parser.add_argument("--model", choices=utils.MODELS, default="resnet50",
                        help="architecture to train (default: resnet50)")
    parser.add_argument("--epochs", type=common.positive_int, default=15, help="number of epochs (default: 15)")
    parser.add_argument("--batch-size", type=common.positive_int, default=128,
                        help="training mini-batch size, global: under torchrun each process takes an equal share (it "
                        "must divide), so the same flags, --lr included, are the same recipe on 1 or N processes "
                        "(default: 128)")
    parser.add_argument("--lr", type=common.positive_float, default=0.2,
                        help="peak learning rate of the one-cycle schedule (default: 0.2)")
    parser.add_argument("--weight-decay", type=common.natural_float, default=5e-4,
                        help="SGD weight decay (default: 5e-4)")
    parser.add_argument("--schedule", choices=["one-cycle", "constant"], default="one-cycle",
                        help="learning rate: one-cycle (warm up to --lr, then cosine down to ~0) or constant --lr "
                        "(default: one-cycle)")
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                        help="Nesterov momentum (default: on)")
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="start from these weights instead of random ones (e.g. the shipped checkpoint)")
    parser.add_argument("--label-smoothing", type=common.natural_float, default=0.1,
                        help="label smoothing of the loss (default: 0.1)")
    parser.add_argument("--cutout", type=common.natural_int, default=0, metavar="SIZE",
                        help="also grey out a random SIZE x SIZE square of each training image (default: 0 = off)")
    parser.add_argument("--ema", type=common.natural_float, default=0, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights with this decay per step, "
                        "e.g. 0.999 (default: 0 = off)")
    parser.add_argument("--teacher", metavar="CHECKPOINT",
                        help="knowledge distillation: also learn from this trained model's predictions (a checkpoint "
                        "of any --model, e.g. a vgg16 run's best.pt, trained on the run's classes); it sees the same "
                        "augmented batches, in eval mode and without gradients (default: none)")
    parser.add_argument("--kd-weight", type=common.natural_float, metavar="W",
                        help="with --teacher: loss = (1 - W) * cross-entropy (label-smoothed) + W * T^2 * "
                        "KL(teacher || student), both softmaxes at temperature T (default: 0.5)")
    parser.add_argument("--kd-temperature", type=common.positive_float, metavar="T",
                        help="with --teacher: the softmax temperature T of the distillation term; higher shows more "
                        "of the teacher's view of the wrong classes (default: 4)")
    parser.add_argument("--data-dir", help="offline CIFAR-10: DIR/cifar-10-batches-py or DIR/train/<class>/ "
                        "(default: download into data/; the held-out images come from this training split)")
    parser.add_argument("--classes", help=utils.CLASSES_HELP)
    parser.add_argument("--val-per-class", type=common.positive_int, default=500,
                        help="training images per class held out for validation (default: 500)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed that picks the validation images (default: 0)")
    parser.add_argument("--out", default="runs/train",
                        help="folder for last.pt, best.pt, history.json (default: runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out/last.pt")
    parser.add_argument("--export", metavar="PATH", help="instead of training: write --out/best.pt to PATH with "
                        "half-precision weights and no optimizer state (the shipped checkpoint), after checking its "
                        "validation accuracy is unchanged")
    parser.add_argument("--device", help=utils.DEVICE_HELP)
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP +
                        "; part of the recipe: with --resume, auto keeps the run's own and fp32 or bf16 switches the "
                        "run to it from the next epoch on (the history records the switch)")
    parser.add_argument("--retune", action="store_true", help=speed.RETUNE_HELP)
    parser.add_argument("--sync-bn", action="store_true",
                        help="under torchrun on CUDA GPUs: batch-norm statistics over the global batch "
                        "(SyncBatchNorm) instead of each process's share; part of the recipe (default: off)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for initialisation, shuffling and augmentation (default: 0)")
    args = parser.parse_args(argv)
    if args.ema >= 1:
        parser.error(f"--ema must be below 1 (e.g. 0.999), got {args.ema}")
    if not args.teacher and (args.kd_weight is not None or args.kd_temperature is not None):
        parser.error("--kd-weight and --kd-temperature only apply with --teacher CHECKPOINT")
    if args.kd_weight is not None and args.kd_weight > 1:
        parser.error(f"--kd-weight must be between 0 and 1, got {args.kd_weight}")
    if args.teacher:
        args.kd_weight = 0.5 if args.kd_weight is None else args.kd_weight
        args.kd_temperature = 4.0 if args.kd_temperature is None else args.kd_temperature
    return args


def recipe_of(args, precision: str) -> dict:
    """The settings that define a run; --resume refuses to mix two recipes."""
    keys = ("model", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "classes", "val_per_class",
            "split_seed", "seed")
    recipe = {key: getattr(args, key) for key in keys}
    recipe.update(optimizer="sgd-nesterov" if args.nesterov else "sgd", momentum=MOMENTUM, schedule=args.schedule,
                  augmentation="random-crop-4+flip" + (f"+cutout-{args.cutout}" if args.cutout else ""),
                  precision=precision)
    if args.ema:
        recipe["ema"] = args.ema
    if args.init:
        recipe["init"] = args.init
    recipe["world_size"] = distributed.world_size()  # each process's data and random draws depend on it
    if args.sync_bn:
        recipe["sync_bn"] = True
    if args.teacher:  # runs without a teacher (and older runs) have none of these keys
        recipe.update(teacher=args.teacher, kd_weight=args.kd_weight, kd_temperature=args.kd_temperature)
    return recipe


def load_train_split(args, classes, device, config: speed.Config):
    """Training and validation batches of the class-balanced split; prints what was loaded."""
    started = time.perf_counter()
    images, labels = utils.load_data("train", args.data_dir, classes)
    val_index = utils.validation_indices(labels, args.val_per_class, args.split_seed)
    train_mask = torch.ones(len(labels), dtype=torch.bool)
    train_mask[val_index] = False
    distributed.say(f"Data: {args.data_dir or 'CIFAR-10 in data/'}, {int(train_mask.sum())} training and "
                    f"{len(val_index)} validation images (split seed {args.split_seed}), "
                    f"loaded in {time.perf_counter() - started:.1f} s")
    world = distributed.world_size()
    if world == 1:
        train_batches = utils.Batches(images[train_mask], labels[train_mask], args.batch_size, device, train=True,
                                      seed=args.seed, cutout=args.cutout)
    else:  # this process's share of each epoch, args.batch_size // world images a step
        train_batches = distributed.ShardedBatches(images[train_mask], labels[train_mask], args.batch_size // world,
                                                   device, args.seed, args.cutout, distributed.rank(), world)
    val_batches = utils.Batches(images[val_index], labels[val_index], EVAL_BATCH_SIZE, device, train=False)
    train_batches.channels_last = val_batches.channels_last = config.channels_last
    data = f"{describe_source(args.data_dir)}, {int(train_mask.sum()):,}/{len(val_index):,} train/validation split, " \
           f"seed {args.split_seed}"
    return train_batches, val_batches, data


def starting_model(args, classes) -> tuple[nn.Module, list[dict]]:
    """Random weights, or --init's; and the training stages behind them, so the metadata tells the whole story."""
    utils.seed_everything(args.seed)
    model = utils.build_model(args.model, len(classes))
    # No zero-initialised last batch-norm (Goyal et al.) here: in this assignment a ReLU follows it,
    # and ReLU'(0) = 0 would leave every residual branch at zero for good.
    if not args.init:
        return model, []
    init_state = utils.load_checkpoint(args.init)
    utils.load_weights(model, init_state, args.model, classes, args.init)
    return model, utils.stages_of(init_state)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = distributed.pick_device(args.device)
    if args.sync_bn and device.type != "cuda":
        raise common.UserError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm runs on nothing else); leave it out "
                               f"on {device.type}, where each process normalizes over its own share of the batch.")
    with distributed.process_group(device):
        try:
            fit(args, device)
        except (common.UserError, RuntimeError) as error:
            if distributed.world_size() == 1 or not (isinstance(error, common.UserError) or distributed.lost(error)):
                raise
            # one line from the rank that failed; the others lose contact and say so; torchrun's summary follows
            reason = str(error) if isinstance(error, common.UserError) else (
                "lost contact with the other processes: if one of them failed, its own line says why. The run goes "
                "on from its last saved epoch with the same command plus --resume.")
            raise common.UserError(f"rank {distributed.rank()} of {distributed.world_size()}: {reason}") from None


def fit(args, device: torch.device) -> None:
    """Train (or resume, or export) the run that `args` describe, in this process: all of it or its torchrun share."""
    classes = utils.parse_classes(args.classes)
    out = Path(args.out).expanduser()
    if args.batch_size % distributed.world_size():
        raise common.UserError(f"--batch-size {args.batch_size} is the global batch and must split evenly over the "
                               f"{distributed.world_size()} processes: pass a multiple of {distributed.world_size()}.")
    state, precision = resume.open_run(args, out, device)
    batch_size = args.batch_size // distributed.world_size()  # what each process runs at a time
    train_choice = distributed.share(speed.choose(args.model, len(classes), batch_size, True, device, precision,
                                                  args.retune) if distributed.is_main() else None)
    distributed.say(train_choice.line())
    config = train_choice.config
    train_batches, val_batches, data = load_train_split(args, classes, device, config)
    if args.export:
        if distributed.is_main():  # writing files is rank 0's job
            export(out / "best.pt", Path(args.export), val_batches, device, config, data)
        return
    recipe = recipe_of(args, config.precision)
    if state is not None:
        resume.check_resumable(state, recipe, out)
    switch = ""  # "bf16 -> fp32" when --resume changes the precision, recorded in the next epoch's history row
    if state is not None and resume.saved_recipe(state)["precision"] != recipe["precision"]:
        switch = f"{resume.saved_recipe(state)['precision']} -> {recipe['precision']}"

    model, earlier_stages = starting_model(args, classes)
    model = speed.prepare(model, device, config)
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = build_ema(model, args.ema)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    teacher = distill.load_teacher(args.teacher, classes, device, config) if args.teacher else None
    train_criterion = distill.Distillation(criterion, args.kd_weight, args.kd_temperature) if teacher else criterion
    optimizer = build_optimizer(model, "sgd", args.lr, args.weight_decay, args.nesterov)
    scheduler = build_schedule(optimizer, args.schedule, args.lr, args.epochs, len(train_batches))
    history, start_epoch, best = [], 1, 0.0
    if state is not None:
        history, start_epoch, best = resume.restore_run(state, model, optimizer, scheduler, train_batches, ema)
        distributed.say(f"Resuming {out} after epoch {state['epoch']} (best validation accuracy so far {best:.2f} %)"
                        + (f"; precision switched {switch} from epoch {start_epoch} on" if switch else ""))
    trained = distributed.wrap(model, device)  # the same parameters; under torchrun, gradients averaged over ranks

    for epoch in range(start_epoch, args.epochs + 1):
        started = time.perf_counter()
        train_loss, train_accuracy = train_one_epoch(trained, train_batches, optimizer, train_criterion, device, epoch,
                                                     args.epochs, scheduler, config, ema,
                                                     quiet=not distributed.is_main(), teacher=teacher)
        if not distributed.is_main():
            continue  # rank 0 validates and saves; the others wait for it at the next epoch's first step
        train_seconds = time.perf_counter() - started
        validated, kept, choice = validate(model, ema, val_batches, device, config, criterion)
        print(accuracy_line(validated.accuracy, "validation"), flush=True)
        row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy, "val_loss": validated.loss,
               "val_accuracy": validated.accuracy, "lr": optimizer.param_groups[0]["lr"]} | choice
        if switch:
            row["precision_switch"], switch = switch, ""
        history.append(row | {"seconds": time.perf_counter() - started, "train_seconds": train_seconds,
                              "speed": config.describe()})
        best = max(best, validated.accuracy)
        meta = {"arch": args.model, "num_classes": len(classes), "classes": list(classes), "epoch": epoch,
                "accuracy": validated.accuracy, "recipe": recipe, "data": data, "stages": earlier_stages,
                "accuracy_split": f"validation ({len(val_batches.labels)} held-out training images, "
                                  f"seed {args.split_seed})",
                "total_epochs": sum(stage["epochs"] for stage in earlier_stages) + epoch}
        resume.save_epoch(out, model, ema, meta, validated.accuracy >= best, kept, optimizer=optimizer.state_dict(),
                          scheduler=scheduler.state_dict(), history=history, best_accuracy=best,
                          batches_rng=train_batches.generator.get_state(), torch_rng=torch.get_rng_state())
        print(f"epoch {epoch}: train loss {train_loss:.4f}, validation loss {validated.loss:.4f}, "
              f"validation accuracy {validated.accuracy:.2f} % (best {best:.2f} %), "
              f"{history[-1]['seconds']:.0f} s", flush=True)


def validate(model, ema, val_batches, device, config: speed.Config, criterion) -> tuple[Evaluation, nn.Module, dict]:
    """The epoch's validation, the weights it keeps and what the history row records of the choice.

    With --ema both the average and the raw weights are validated and the better is kept: an average taken
    over a high-learning-rate stretch, with batch-norm statistics averaged rather than measured again,
    can score far below the raw weights (vgg16-run1, epoch 13: 74.40 % against 86.48 %).
    """
    if ema is None:
        return evaluate(model, val_batches, device, config, criterion), model, {}
    average = evaluate(ema.module, val_batches, device, config, criterion)
    raw = evaluate(model, val_batches, device, config, criterion)
    record = {"val_accuracy_ema": average.accuracy, "val_accuracy_raw": raw.accuracy}
    if raw.accuracy > average.accuracy:
        return raw, model, record | {"kept": "raw"}
    return average, ema.module, record | {"kept": "average"}


def describe_source(data_dir) -> str:
    """Words for the metadata: which copy of CIFAR-10 a run trained on."""
    if data_dir and any(Path(data_dir, "train").glob("*/*.jp*g")):
        return f"JPEG copy of the CIFAR-10 training split ({data_dir})"
    return f"CIFAR-10 training split ({data_dir or 'torchvision download'})"


def export(best_path: Path, target: Path, val_batches, device, config: speed.Config, data: str) -> None:
    """Write a small copy of a run's best checkpoint (fp16 weights, no training state) after checking it.

    Both accuracies are computed in fp32 whatever the run's precision, so that they differ only by the fp16
    storage and the file's recorded `shipped_accuracy` does not depend on the CPU that exported it."""
    config = replace(config, precision="fp32")
    state = utils.load_checkpoint(best_path, device)
    model = utils.build_model(state["arch"], state["num_classes"])
    utils.load_weights(model, state, state["arch"], tuple(state["classes"]), best_path)
    model = speed.prepare(model, device, config)
    full = evaluate(model, val_batches, device, config).accuracy
    keys = ("arch", "num_classes", "classes", "epoch", "total_epochs", "accuracy", "accuracy_split", "recipe", "stages")
    meta = {key: state[key] for key in keys if key in state} | {"data": data, "history": state.get("history", [])}
    check = target.with_name(target.name + ".check")
    utils.save_checkpoint(check, model, meta, half=True)
    small = utils.load_checkpoint(check, device)
    utils.load_weights(model, small, state["arch"], tuple(state["classes"]), target)
    half = evaluate(model, val_batches, device, config).accuracy
    check.unlink()
    if abs(half - full) > 0.1:
        raise common.UserError(f"half precision changes the validation accuracy from {full:.2f} % to {half:.2f} %; "
                               "not exported.")
    utils.save_checkpoint(target, model, meta | {"shipped_accuracy": half}, half=True)  # the file's own accuracy
    print(f"Exported epoch {state['epoch']} to {target} ({target.stat().st_size / 1e6:.1f} MB): validation accuracy "
          f"{full:.2f} % with float32 weights, {half:.2f} % after the half-precision round trip "
          "(both computed in fp32)")


if __name__ == "__main__":
    common.run_cli(main)
