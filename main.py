"""The students' entry point: fine-tune the shipped pretrained ResNet-50 on CIFAR-10, then test it.

    python main.py                       # 1 epoch from checkpoints/resnet50_cifar10.pt
    python main.py --optimizer adam --lr 1e-3 --schedule constant   # the course's original run
    python main.py --epochs 0            # only evaluate the checkpoint
    python main.py --help                # every option
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import utils
from course import cli, models, speed
from course.loops import EVAL_BATCH_SIZE, accuracy_line, build_optimizer, build_schedule, evaluate, train_one_epoch

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
WEIGHT_DECAY = 5e-4  # SGD's; gentle on a converged model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fine-tune a pretrained model on CIFAR-10 and report its test "
                                     "accuracy, as in the course assignment.")
    parser.add_argument("--model", choices=list(models.MODELS), default="resnet50", metavar="MODEL",
                        help=f"architecture, one of those this copy has: {', '.join(models.available_models())} "
                        "(default: resnet50)")
    parser.add_argument("--checkpoint",
                        help="pretrained weights to start from (default: checkpoints/<model>_cifar10.pt)")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="start from random weights instead of a checkpoint")
    parser.add_argument("--epochs", type=cli.natural_int, default=1,
                        help="fine-tuning epochs; 0 only evaluates (default: 1)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=100,
                        help="mini-batch size (default: 100, as in the course)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                        help="sgd (momentum 0.9, weight decay 5e-4) or adam (default: sgd)")
    parser.add_argument("--lr", type=cli.positive_float, default=1e-3,
                        help="learning rate (default: 0.001; the course used adam with 1e-3)")
    parser.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                        help="cosine: the lr falls from --lr to 0 over the fine-tuning, so that the last steps do not "
                        "leave the weights at a random spot and the accuracy depends less on --seed; "
                        "constant: --lr throughout, as in the course (default: cosine)")
    parser.add_argument("--data-dir", help="offline CIFAR-10: DIR/cifar-10-batches-py, or DIR/train/<class>/ and "
                        "DIR/test/<class>/ (default: data/cifar10-split or data/cifar-10-batches-py when there, "
                        "else download into data/)")
    parser.add_argument("--classes", help=utils.CLASSES_HELP)
    parser.add_argument("--out", help="where to save the fine-tuned weights (default: a new "
                        "runs/<model>_finetuned_<date>-<time>.pt; never the pretrained file)")
    parser.add_argument("--device", help=speed.DEVICE_HELP)
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed for shuffling and augmentation (default: 0)")
    return parser.parse_args(argv)


def trained_epochs(meta: dict) -> int:
    """Epochs behind a checkpoint, all training stages counted (0 for random weights)."""
    return meta.get("total_epochs", meta.get("epoch", 0))


def load_model(args, classes):
    """The model with its pretrained weights (or random ones); prints one line on what was loaded."""
    if args.no_pretrained:
        print(f"Model: {args.model} from random weights (--no-pretrained): "
              "this is training from scratch, not fine-tuning.")
        return models.build_model(args.model, len(classes)), {}
    models.model_class(args.model)  # a model this copy lacks is said first, not as a missing checkpoint
    path = pretrained_path(args)
    if not path.is_file():
        data_dir = utils.find_prepared_copy()
        raise cli.UserError(
            f"no pretrained checkpoint at {cli.display_path(path)}. Make one with `python train.py --model "
            f"{args.model} --data-dir {cli.display_path(data_dir) if data_dir else 'DIR'} --out runs/train` and "
            "pass --checkpoint runs/train/best.pt, or pass --no-pretrained to train from scratch.")
    model, meta = models.load_trained(path, classes, arch=args.model)
    meta["path"] = path
    print(f"Model: pretrained {args.model} from {cli.display_path(path)} "
          f"({trained_epochs(meta)} epochs{describe_accuracy(meta)})")
    return model, meta


def describe_accuracy(meta: dict) -> str:
    """', 85.58 % on its validation split (...)', saying which weights the number was measured with."""
    if "shipped_accuracy" in meta:  # measured on the fp16 file itself when it was exported
        return f", {meta['shipped_accuracy']:.2f} % on its {meta['accuracy_split']}"
    if "accuracy" not in meta:
        return ""
    text = f", {meta['accuracy']:.2f} % on its {meta.get('accuracy_split', 'validation split')}"
    if any(value.dtype == torch.float16 for value in meta["model"].values()):
        text += " before the export to fp16, which may move it by up to 0.1 point"
    return text


def load_batches(args, classes, device):
    """Training and test batches; prints where the data came from and how long it took."""
    started = time.perf_counter()
    data_dir = args.data_dir or utils.find_prepared_copy()
    train_images, train_labels = utils.load_data("train", data_dir, classes)
    test_images, test_labels = utils.load_data("test", data_dir, classes)
    how = "--data-dir" if args.data_dir else "found by itself; --data-dir chooses another" if data_dir else "download"
    where = cli.display_path(data_dir or utils.DEFAULT_DATA_ROOT)
    print(f"Data: {where} ({how}): {len(train_labels)} training and {len(test_labels)} test images, loaded in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    train_batches = utils.Batches(train_images, train_labels, args.batch_size, device, train=True, seed=args.seed)
    test_batches = utils.Batches(test_images, test_labels, EVAL_BATCH_SIZE, device, train=False)
    return train_batches, test_batches


def timestamp() -> str:
    """'20261124-081502': the local date and time, for file names."""
    return time.strftime("%Y%m%d-%H%M%S")


def pretrained_path(args) -> Path:
    """--checkpoint, or the shipped checkpoint of the model."""
    return Path(args.checkpoint or CHECKPOINT_DIR / f"{args.model}_cifar10.pt")


def output_path(args) -> Path:
    """--out, or a new timestamped file under runs/, so that no run overwrites another."""
    if args.out:
        return Path(args.out)
    return Path("runs") / f"{args.model}_finetuned_{timestamp()}.pt"


def save_or_rescue(path: Path, model: nn.Module, meta: dict) -> Path:
    """Save to `path`; if that fails after all (a full disk, a folder gone), save to the temp folder and say where."""
    try:
        models.save_checkpoint(path, model, meta)
        return path
    except OSError as error:
        rescued = Path(tempfile.gettempdir()) / f"rescued-{timestamp()}-{path.name}"
        models.save_checkpoint(rescued, model, meta)
        print(f"error: could not save the weights to {cli.display_path(path)} ({error.strerror or error}); they "
              f"are in {rescued} instead: copy them from there.", file=sys.stderr)
        return rescued


def main(argv=None) -> int | None:
    args = parse_args(argv)
    started = time.perf_counter()
    device = speed.pick_device(args.device)
    speed.seed_everything(args.seed)
    classes = utils.parse_classes(args.classes)
    out_path = output_path(args)
    if not args.no_pretrained and out_path.resolve() == pretrained_path(args).resolve():
        raise cli.UserError(f"--out {out_path} is the pretrained checkpoint itself; choose another file so it is "
                               "never overwritten.")
    if args.epochs > 0:  # found now, not after the training it would lose
        cli.check_writable(out_path, "--out")

    model, meta = load_model(args, classes)
    print(f"Device: {device} ({speed.device_name(device)})", flush=True)
    train_batches, test_batches = load_batches(args, classes, device)
    criterion = nn.CrossEntropyLoss()
    if args.epochs > 0:
        choice = speed.choose(args.model, True, device, args.precision)
        print(choice.line(), flush=True)
        model = speed.prepare(model, device, choice.config)
        train_batches.channels_last = choice.config.channels_last
        optimizer = build_optimizer(model, args.optimizer, args.lr, WEIGHT_DECAY)
        scheduler = build_schedule(optimizer, args.schedule, args.lr, args.epochs, len(train_batches))
        for epoch in range(1, args.epochs + 1):
            train_one_epoch(model, train_batches, optimizer, criterion, device, epoch, args.epochs, scheduler,
                            config=choice.config)
    choice = speed.choose(args.model, False, device, args.precision)
    print(choice.line(), flush=True)
    test_batches.channels_last = choice.config.channels_last
    accuracy = evaluate(model, test_batches, device, choice.config).accuracy  # on a copy prepared for choice
    print(accuracy_line(accuracy, "test"), flush=True)

    saved = out_path
    if args.epochs > 0:
        recipe = {"finetuned_from": str(meta["path"]) if meta else None, "epochs": args.epochs,
                  "optimizer": args.optimizer, "lr": args.lr, "schedule": args.schedule, "batch_size": args.batch_size,
                  "seed": args.seed, "precision": args.precision}
        saved = save_or_rescue(out_path, model, {"arch": args.model, "num_classes": len(classes),
                                                 "classes": list(classes),
                                                 "epoch": trained_epochs(meta) + args.epochs, "accuracy": accuracy,
                                                 "accuracy_split": "test", "recipe": recipe})
        cli.say_even_if_stdout_closed(f"Saved the {'trained' if args.no_pretrained else 'fine-tuned'} weights to "
                                      f"{cli.display_path(saved)}")
    print(f"Done in {cli.format_seconds(time.perf_counter() - started)} on {device}.")
    return 1 if saved != out_path else None  # rescued: the weights are not where they were asked for


if __name__ == "__main__":
    cli.run_cli(main, finish_when_stdout_closes=True)
