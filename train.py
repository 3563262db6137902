"""The from-scratch trainer: train a model on CIFAR-10 (or go on from --init), resumable after every epoch.

    python train.py --model resnet50 --epochs 30 --data-dir data/cifar10-jpg --out ~/.cache/resnet50-run
    torchrun --standalone --nproc_per_node 2 train.py ...     # data-parallel: course/distributed.py

It builds on course/loops.py (main.py's loops) and adds what only long runs need: a validation split carved out
of the training images with a fixed seed (the test split is never looked at here), resume (course/resume.py),
torchrun (course/distributed.py), knowledge distillation (course/distill.py), an average of the weights (EMA) and
the export of the shipped checkpoint (course/export.py).
"""
import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import utils
from course import cli, distill, distributed, loops, models, resume, speed
from course.export import export_checkpoint, undo_scale_up


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights and batch-norm statistics (None when decay is 0)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model on CIFAR-10 from scratch (or from --init), "
                                     "choosing the best epoch on a validation split.")
    parser.add_argument("--model", choices=list(models.MODELS), default="resnet50",
                        help="architecture to train (default: resnet50)")
    parser.add_argument("--epochs", type=cli.positive_int, default=15, help="number of epochs (default: 15)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128,
                        help="training mini-batch size, global: under torchrun each process takes an equal share (it "
                        "must divide), so the same flags, --lr included, are the same recipe on 1 or N processes "
                        "(default: 128)")
    parser.add_argument("--lr", type=cli.positive_float, default=0.2,
                        help="peak learning rate of the one-cycle schedule (default: 0.2)")
    parser.add_argument("--weight-decay", type=cli.natural_float, default=5e-4,
                        help="SGD weight decay (default: 5e-4)")
    parser.add_argument("--schedule", choices=["one-cycle", "constant"], default="one-cycle",
                        help="learning rate: one-cycle (warm up to --lr, then cosine down to ~0) or constant --lr "
                        "(default: one-cycle)")
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                        help="Nesterov momentum (default: on)")
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="start from these weights instead of random ones (e.g. the shipped checkpoint)")
    parser.add_argument("--label-smoothing", type=cli.natural_float, default=0.1,
                        help="label smoothing of the loss (default: 0.1)")
    parser.add_argument("--cutout", type=cli.natural_int, default=0, metavar="SIZE",
                        help="also grey out a random SIZE x SIZE square of each training image (default: 0 = off)")
    parser.add_argument("--ema", type=cli.natural_float, default=0, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights with this decay per step, "
                        "e.g. 0.999 (default: 0 = off)")
    parser.add_argument("--teacher", metavar="CHECKPOINT", nargs="+",
                        help="knowledge distillation: also learn from this trained model's predictions (a checkpoint "
                        "of any --model, e.g. a vgg16 run's best.pt, trained on the run's classes); it sees the same "
                        "augmented batches, in eval mode and without gradients. Several checkpoints teach as one "
                        "ensemble: the mean of their log-probabilities (default: none)")
    parser.add_argument("--kd-weight", type=cli.natural_float, metavar="W",
                        help="with --teacher: loss = (1 - W) * cross-entropy (label-smoothed) + W * T^2 * "
                        "KL(teacher || student), both softmaxes at temperature T (default: 0.5)")
    parser.add_argument("--kd-temperature", type=cli.positive_float, metavar="T",
                        help="with --teacher: the softmax temperature T of the distillation term; higher shows more "
                        "of the teacher's view of the wrong classes (default: 4)")
    parser.add_argument("--data-dir", help="offline CIFAR-10: DIR/cifar-10-batches-py or DIR/train/<class>/ "
                        "(default: download into data/; the held-out images come from this training split)")
    parser.add_argument("--classes", help=utils.CLASSES_HELP)
    parser.add_argument("--val-per-class", type=cli.positive_int, default=500,
                        help="training images per class held out for validation (default: 500)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed that picks the validation images (default: 0)")
    parser.add_argument("--out", default="runs/train",
                        help="folder for last.pt, best.pt, history.json (default: runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out/last.pt")
    parser.add_argument("--export", metavar="PATH", help="instead of training: write --out/best.pt to PATH with "
                        "half-precision weights, no optimizer state and its convolutions scaled up so that Adam "
                        "cannot wreck them (the shipped checkpoint), after checking its validation accuracy is "
                        "unchanged; --out/best.pt may be a shipped file, to export it again")
    parser.add_argument("--device", help=speed.DEVICE_HELP)
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP +
                        "; part of the recipe: with --resume, auto keeps the run's own and fp32 or bf16 switches the "
                        "run to it from the next epoch on (the history records the switch)")
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
    recipe.update(optimizer="sgd-nesterov" if args.nesterov else "sgd", momentum=loops.MOMENTUM,
                  schedule=args.schedule,
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
        teacher = args.teacher[0] if len(args.teacher) == 1 else args.teacher  # one: as runs before ensembles
        recipe.update(teacher=teacher, kd_weight=args.kd_weight, kd_temperature=args.kd_temperature)
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
    val_batches = utils.Batches(images[val_index], labels[val_index], loops.EVAL_BATCH_SIZE, device, train=False)
    train_batches.channels_last = val_batches.channels_last = config.channels_last
    data = f"{describe_source(args.data_dir)}, {int(train_mask.sum()):,}/{len(val_index):,} train/validation split, " \
           f"seed {args.split_seed}"
    return train_batches, val_batches, data


def starting_model(args, classes) -> tuple[nn.Module, list[dict]]:
    """Random weights, or --init's; and the training stages behind them, so the metadata tells the whole story."""
    speed.seed_everything(args.seed)
    model = models.build_model(args.model, len(classes))
    # No zero-initialised last batch-norm (Goyal et al.) here: in this assignment a ReLU follows it,
    # and ReLU'(0) = 0 would leave every residual branch at zero for good.
    if not args.init:
        return model, []
    init_state = models.load_checkpoint(args.init)
    models.load_weights(model, init_state, args.model, classes, args.init)
    undo_scale_up(model, init_state)  # SGD would barely move the shipped file's scaled-up convolutions
    return model, resume.stages_of(init_state)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = distributed.rank_device(args.device)
    if args.sync_bn and device.type != "cuda":
        raise cli.UserError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm runs on nothing else); leave it out "
                               f"on {device.type}, where each process normalizes over its own share of the batch.")
    with distributed.process_group(device):
        try:
            fit(args, device)
        except (cli.UserError, RuntimeError) as error:
            if distributed.world_size() == 1 or not (isinstance(error, cli.UserError) or distributed.lost(error)):
                raise
            # one line from the rank that failed; the others lose contact and say so; torchrun's summary follows
            reason = str(error) if isinstance(error, cli.UserError) else (
                "lost contact with the other processes: if one of them failed, its own line says why. The run goes "
                "on from its last saved epoch with the same command plus --resume.")
            raise cli.UserError(f"rank {distributed.rank()} of {distributed.world_size()}: {reason}") from None


def fit(args, device: torch.device) -> None:
    """Train (or resume, or export) the run that `args` describe, in this process: all of it or its torchrun share."""
    classes = utils.parse_classes(args.classes)
    out = Path(args.out).expanduser()
    if args.batch_size % distributed.world_size():
        raise cli.UserError(f"--batch-size {args.batch_size} is the global batch and must split evenly over the "
                               f"{distributed.world_size()} processes: pass a multiple of {distributed.world_size()}.")
    state, precision = resume.open_run(args, out, device)
    train_choice = speed.choose(args.model, True, device, precision)
    distributed.say(train_choice.line())
    config = train_choice.config
    train_batches, val_batches, data = load_train_split(args, classes, device, config)
    if args.export:
        if distributed.is_main():  # writing files is rank 0's job
            export_checkpoint(out / "best.pt", Path(args.export), val_batches, device, config, data)
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
    optimizer = loops.build_optimizer(model, "sgd", args.lr, args.weight_decay, args.nesterov)
    scheduler = loops.build_schedule(optimizer, args.schedule, args.lr, args.epochs, len(train_batches))
    history, start_epoch, best = [], 1, 0.0
    if state is not None:
        history, start_epoch, best = resume.restore_run(state, model, optimizer, scheduler, train_batches, ema)
        distributed.say(f"Resuming {out} after epoch {state['epoch']} (best validation accuracy so far {best:.2f} %)"
                        + (f"; precision switched {switch} from epoch {start_epoch} on" if switch else ""))
    trained = distributed.wrap(model, device)  # the same parameters; under torchrun, gradients averaged over ranks

    for epoch in range(start_epoch, args.epochs + 1):
        started = time.perf_counter()
        stats = loops.train_one_epoch(trained, train_batches, optimizer, train_criterion, device, epoch, args.epochs,
                                      scheduler, config, ema, quiet=not distributed.is_main(), teacher=teacher,
                                      ranks=distributed.world_size())
        # under torchrun, every rank's share of the epoch (one process: the numbers themselves)
        stats = loops.EpochStats(*distributed.sum_over_ranks([stats.loss_sum, stats.correct, stats.seen, stats.steps],
                                                             device))
        train_loss, train_accuracy = stats.loss, stats.accuracy
        if not distributed.is_main():
            continue  # rank 0 validates and saves; the others wait for it at the next epoch's first step
        train_seconds = time.perf_counter() - started
        validated, kept, choice = validate(model, ema, val_batches, device, config, criterion)
        print(loops.accuracy_line(validated.accuracy, "validation"), flush=True)
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


def validate(model, ema, val_batches, device, config: speed.Config,
             criterion) -> tuple[loops.Evaluation, nn.Module, dict]:
    """The epoch's validation, the weights it keeps and what the history row records of the choice.

    With --ema both the average and the raw weights are validated and the better is kept: an average taken
    over a high-learning-rate stretch, with batch-norm statistics averaged rather than measured again,
    can score far below the raw weights (vgg16-run1, epoch 13: 74.40 % against 86.48 %).
    """
    if ema is None:
        return loops.evaluate(model, val_batches, device, config, criterion), model, {}
    average = loops.evaluate(ema.module, val_batches, device, config, criterion)
    raw = loops.evaluate(model, val_batches, device, config, criterion)
    record = {"val_accuracy_ema": average.accuracy, "val_accuracy_raw": raw.accuracy}
    if raw.accuracy > average.accuracy:
        return raw, model, record | {"kept": "raw"}
    return average, ema.module, record | {"kept": "average"}


def describe_source(data_dir) -> str:
    """Words for the metadata: which copy of CIFAR-10 a run trained on."""
    if data_dir and any(Path(data_dir, "train").glob("*/*.jp*g")):
        return f"JPEG copy of the CIFAR-10 training split ({data_dir})"
    return f"CIFAR-10 training split ({data_dir or 'torchvision download'})"


if __name__ == "__main__":
    cli.run_cli(main)
