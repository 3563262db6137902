"""The reports' experiments, one command each: train, then write curves, figures and a results table.

    python -m experiments.reports three-class --data-dir data/cifar10-jpg
    python -m experiments.reports scratch-vs-pretrained --data-dir data/cifar10-jpg
    python -m experiments.reports course-run --data-dir data/cifar10-split
    python -m experiments.reports figures runs/three-class/vgg16-course --data-dir data/cifar10-jpg

Training goes through train.py's main() (main.py's for course-run), in this process.
Running a command again resumes its unfinished runs (train.py refuses a changed
recipe). experiments/README.md gives the recipes, the reports' numbers and CPU estimates.
three-class and scratch-vs-pretrained also run under torchrun (`torchrun --nproc_per_node 2
-m experiments.reports three-class ...`): every process trains, rank 0 alone prints and writes.
"""
import argparse
import functools
import json
import os
import time
from pathlib import Path

import torch

import main as finetune
import train
import utils
from course import cli, distributed, loops, models, resume, speed
from experiments import plots

THREE_CLASSES = ("airplane", "automobile", "bird")
THREE_CLASS_EPOCHS = {"vgg16-course": 20, "resnet50-cifar": 15}  # model -> the report's epochs
SCRATCH_EPOCHS = 20
COURSE_EPOCHS = 1
# The reports' recipe, for train.py and in words for the results tables.
RECIPE_WORDS = ("SGD lr 0.01, momentum 0.9 (no Nesterov), weight decay 5e-4, constant lr, no label smoothing, "
                "random crop + flip, batch 128")
RECIPE = ["--lr", "0.01", "--no-nesterov", "--weight-decay", "5e-4", "--schedule", "constant", "--label-smoothing", "0",
          "--batch-size", "128"]
REPORTED = {"vgg16-course": "93 % (20 epochs, 111 s on a GPU)",
            "resnet50-cifar": "89.1 % (15 epochs, 2 min 46 s on a GPU)", "scratch": "40 % after 20 epochs",
            "pretrained": "82 % after 20 epochs", "course": "82.4-83.0 % (1 epoch)"}
MODEL_NAMES = {"vgg16": "VGG16-BN, CIFAR head", "vgg16-course": "VGG16-BN, course head",
               "resnet50-cifar": "ResNet-50, CIFAR stem", "resnet50": "ResNet-50 (assignment)"}
GRID_SIZE = 32  # validation images shown in predictions.png


# ------------------------------------------------------------------ helpers

def describe_device(name: str | None) -> str:
    """The device a run uses, in words: 'cpu (2 threads)' or the GPU's name."""
    device = speed.pick_device(name)
    if device.type == "cuda":
        words = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        words = f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else device.type
    return words + (f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else "")


def epochs_cell(done: int, requested: int, reported: int) -> str:
    """'20 of 20 epochs', or says plainly that a run is shorter than the report's or unfinished."""
    if done < requested:
        return (f"{done} of {requested} epochs (unfinished: run the same command again to resume; "
                f"the report ran {reported})")
    if requested < reported:
        return f"{done} of {reported} epochs (shortened with --epochs {requested}: not the report's run)"
    if requested > reported:
        return f"{done} epochs (more than the report's {reported})"
    return f"{done} of {reported} epoch{'s' if reported > 1 else ''}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines) + "\n"


def read_json(path: Path, default=None):
    """A JSON file's content, or `default` when it does not exist."""
    return json.loads(path.read_text()) if path.is_file() else default


@functools.lru_cache(maxsize=2)
def load_train(data_dir: str | None, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split restricted to `classes`, decoded once per process."""
    return utils.load_data("train", data_dir, classes)


# ------------------------------------------------------------ runs and figures

def run_training(run: Path, model: str, classes: tuple[str, ...], requested: int, reported: int, args,
                 extra: list[str]) -> None:
    """train.py's main() into `run` (resuming when run/last.pt exists), recording what was run in
    run/experiment.json."""
    argv = ["--model", model, "--epochs", str(requested), "--out", str(run), *RECIPE,
            "--val-per-class", str(args.val_per_class), *extra]
    if classes != utils.CIFAR10_CLASSES:
        argv += ["--classes", ",".join(classes)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.device:
        argv += ["--device", args.device]
    argv += ["--precision", args.precision]
    resuming = (run / "last.pt").exists()
    if resuming:
        argv.append("--resume")
        distributed.say(f"{run} already holds a run: resuming it (train.py refuses if the recipe changed).")
    labels = load_train(args.data_dir, classes)[1]
    info = read_json(run / "experiment.json", {}) if resuming else {}
    info.update(model=model, classes=list(classes),
                parameters=sum(p.numel() for p in models.build_model(model, len(classes)).parameters()),
                epochs_requested=requested, epochs_reported=reported,
                data_dir=args.data_dir or "CIFAR-10 via torchvision",
                train_images=len(labels) - args.val_per_class * len(classes),
                validation_images=args.val_per_class * len(classes),
                devices=sorted(set(info.get("devices", [])) | {describe_device(args.device)}),
                command=f"{distributed.launcher()} train.py " + " ".join(argv))
    if not resuming and distributed.is_main():  # before training, so that an interrupted run is described too
        cli.write_atomically(run / "experiment.json", json.dumps(info, indent=1).encode())
    distributed.say(f"== {info['command']}")
    train.main(argv)
    if distributed.is_main():
        cli.write_atomically(run / "experiment.json", json.dumps(info, indent=1).encode())


def predict(model: torch.nn.Module, arch: str, classes: tuple[str, ...], images: torch.Tensor, labels: torch.Tensor,
            device: torch.device, precision: str) -> torch.Tensor:
    """The predicted class of every uint8 image, in order, on the fastest evaluation path for --precision."""
    choice = speed.choose(arch, False, device, precision)
    batches = utils.Batches(images, labels, loops.EVAL_BATCH_SIZE, device, train=False)
    batches.channels_last = choice.config.channels_last
    return loops.evaluate(model, batches, device, choice.config).predictions  # a copy, prepared for the choice


def write_run_figures(run: Path, data_dir: str | None, device_name: str | None, precision: str = "auto") -> list[Path]:
    """history.png and history.csv of a train.py run, and predictions.png and confusion.png of its best.pt on its
    validation split."""
    history = read_json(run / "history.json", [])
    if not history or not (run / "best.pt").is_file():
        raise cli.UserError(f"{run} holds no finished epoch (history.json and best.pt): "
                            "give a folder written by train.py or python -m experiments.reports.")
    model, state = models.load_trained(run / "best.pt")
    recipe, classes, arch = state.get("recipe", {}), tuple(state["classes"]), state["arch"]
    if "val_per_class" not in recipe:
        raise cli.UserError(f"{run / 'best.pt'} does not say which images were held out for validation; "
                            "it was not written by train.py.")
    history = resume.whole_history(state, history)
    stages = f", {len(state['stages']) + 1} stages" if state.get("stages") else ""
    title = f"{MODEL_NAMES.get(arch, arch)}, {len(classes)} classes ({run.name}{stages})"
    paths = [plots.plot_history(history, run / "history.png", title),
             plots.save_history_csv(history, run / "history.csv")]

    images, labels = load_train(data_dir, classes)
    index = utils.validation_indices(labels, recipe["val_per_class"], recipe["split_seed"])
    images, labels = images[index], labels[index]
    device = speed.pick_device(device_name)
    predictions = predict(model, arch, classes, images, labels, device, precision)
    accuracy = 100.0 * (predictions == labels).float().mean().item()
    if abs(accuracy - state["accuracy"]) > 0.5:
        print(f"warning: best.pt scores {accuracy:.2f} % here but {state['accuracy']:.2f} % when it was saved: "
              f"is --data-dir the folder the run was trained with?", flush=True)
    grid = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:GRID_SIZE]
    paths.append(plots.plot_predictions(images[grid], labels[grid], predictions[grid], classes,
                                        run / "predictions.png"))
    paths.append(plots.plot_confusion(labels, predictions, classes, run / "confusion.png"))
    print(f"Figures of {run} (best epoch {state['epoch']}, {accuracy:.2f} % on {len(labels)} validation images): "
          + ", ".join(p.name for p in paths), flush=True)
    return paths


def run_row(run: Path, name: str, reported: str) -> tuple[list[str], bool] | None:
    """A results-table row from a run folder's experiment.json and history.json, and whether the run is
    shorter than the report's; None if it has no finished epoch."""
    info, history = read_json(run / "experiment.json"), read_json(run / "history.json", [])
    if not info or not history:
        return None
    best = max(history, key=lambda row: row["val_accuracy"])
    row = [name, f"{info['parameters']:,}", f"{info['train_images']:,} / {info['validation_images']:,}",
           epochs_cell(len(history), info["epochs_requested"], info["epochs_reported"]),
           f"{history[0]['val_accuracy']:.2f} %", f"{best['val_accuracy']:.2f} % (epoch {best['epoch']})",
           f"{cli.format_seconds(sum(row['seconds'] for row in history))} on {', '.join(info['devices'])}", reported]
    return row, len(history) < info["epochs_reported"]


def write_results(out: Path, title: str, intro: str, rows: list[tuple[list[str], bool]], first_column: str) -> Path:
    """results.md: a title, what was run, and the table (with a warning when any run is short of the report's
    epochs)."""
    rows = [row for row in rows if row]
    header = [first_column, "parameters", "train / validation images", "epochs run",
              "validation accuracy after epoch 1", "best validation accuracy",
              "training time (epochs incl. validation) on this machine", "the report"]
    short = any(is_short for _, is_short in rows)
    warning = ("\n**Shorter than the report's runs** (see \"epochs run\"): these numbers are not the report's "
               "experiment and must not be quoted as such.\n") if short else ""
    text = f"# {title}\n\n{intro}\n{warning}\n{markdown_table(header, [row for row, _ in rows])}"
    path = cli.write_atomically(out / "results.md", text.encode())
    print(f"\n{text}\nWrote {path}", flush=True)
    return path


# ---------------------------------------------------------------- experiments

def three_class(args) -> None:
    """VGG16-BN (20 epochs) and the CIFAR-stem ResNet-50 (15 epochs) on airplane, automobile, bird."""
    out = Path(args.out or "runs/three-class")
    for model in args.models:
        run_training(out / model, model, THREE_CLASSES, args.epochs or THREE_CLASS_EPOCHS[model],
                     THREE_CLASS_EPOCHS[model], args, [])
        if distributed.is_main():  # under torchrun the other ranks go on to the next run's training
            write_run_figures(out / model, args.data_dir, args.device, args.precision)
    if not distributed.is_main():
        return
    done = {model: read_json(out / model / "history.json") for model in THREE_CLASS_EPOCHS
            if (out / model / "history.json").is_file()}
    if len(done) > 1:
        plots.plot_comparison({MODEL_NAMES[m]: h for m, h in done.items()}, out / "comparison.png",
                              "3 classes: validation accuracy")
    rows = [run_row(out / model, f"{MODEL_NAMES[model]} (`{model}`)", REPORTED[model]) for model in THREE_CLASS_EPOCHS]
    write_results(out, "Three classes: VGG16-BN vs CIFAR-stem ResNet-50",
                  f"Classes {', '.join(THREE_CLASSES)} (labels 0, 1, 2); validation = {args.val_per_class} "
                  f"training images per class held out (seed 0). Recipe: {RECIPE_WORDS}. "
                  "(The report trained on all 15,000 training images and measured on 3,000 held out.)",
                  rows, "model")


def check_pretrained(path: str, val_per_class: int) -> None:
    """Refuse a checkpoint that may have trained on the validation images used here."""
    recipe = models.load_checkpoint(path).get("recipe", {})
    held_out = (recipe.get("val_per_class"), recipe.get("split_seed"))
    if held_out != (val_per_class, 0):
        raise cli.UserError(f"{path} was trained with {held_out[0]} images per class held out "
                               f"(split seed {held_out[1]}), not {val_per_class} (seed 0), so it may have seen this "
                               "comparison's validation images. Pass the matching --val-per-class, or a checkpoint "
                               "made by train.py.")


def scratch_vs_pretrained(args) -> None:
    """The assignment's ResNet-50 from random weights and from the pretrained checkpoint, same recipe and epochs."""
    out = Path(args.out or "runs/scratch-vs-pretrained")
    check_pretrained(args.checkpoint, args.val_per_class)
    epochs = args.epochs or SCRATCH_EPOCHS
    for name, extra in (("scratch", []), ("pretrained", ["--init", args.checkpoint])):
        run_training(out / name, "resnet50", utils.CIFAR10_CLASSES, epochs, SCRATCH_EPOCHS, args, extra)
        if distributed.is_main():  # under torchrun the other ranks go on to the next run's training
            write_run_figures(out / name, args.data_dir, args.device, args.precision)
    if not distributed.is_main():
        return
    plots.plot_comparison({name: read_json(out / name / "history.json") for name in ("scratch", "pretrained")},
                          out / "comparison.png",
                          "ResNet-50 on CIFAR-10: from scratch vs from the pretrained checkpoint")
    rows = [run_row(out / "scratch", "from scratch (random weights)", REPORTED["scratch"]),
            run_row(out / "pretrained", f"from `{args.checkpoint}`", REPORTED["pretrained"])]
    write_results(out, "ResNet-50: from scratch vs pretrained",
                  f"The assignment's ResNet-50, 10 classes, validation = {args.val_per_class} training images "
                  "per class held out (seed 0: with the full training split as --data-dir, the images the checkpoint "
                  f"never trained on). Same recipe for both: {RECIPE_WORDS}. Curves: comparison.png.", rows, "run")


def course_run(args) -> None:
    """The course's own run: main.py with Adam at lr 1e-3 for 1 epoch from the checkpoint, then the test accuracy."""
    out = Path(args.out or "runs/course-run")
    if (out / "results.md").exists():
        raise cli.UserError(f"{out} already holds a course run ({out / 'results.md'}): "
                               "delete the folder or choose another --out.")
    epochs = args.epochs or COURSE_EPOCHS
    weights = out / "resnet50_finetuned.pt"
    argv = ["--optimizer", "adam", "--lr", "1e-3", "--schedule", "constant", "--epochs", str(epochs),
            "--out", str(weights)]
    argv += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    argv += ["--data-dir", args.data_dir] if args.data_dir else []
    argv += ["--device", args.device] if args.device else []
    argv += ["--precision", args.precision]
    command = "python main.py " + " ".join(argv)
    print(f"== {command}", flush=True)
    started = time.perf_counter()
    finetune.main(argv)
    seconds = time.perf_counter() - started
    accuracy = models.load_checkpoint(weights)["accuracy"]
    test_images = len(utils.load_split("test", args.data_dir)[1])
    header = ["run", "epochs run", "test images", "test accuracy", "wall time (data loading included)", "the course"]
    row = [f"`{command}`", epochs_cell(epochs, epochs, COURSE_EPOCHS),
           f"{test_images:,} ({args.data_dir or 'CIFAR-10 test set'})", f"{accuracy:.2f} %",
           f"{cli.format_seconds(seconds)} on {describe_device(args.device)}", REPORTED["course"]]
    note = "\n**Not the course's 1-epoch run** (see \"epochs run\").\n" if epochs != COURSE_EPOCHS else ""
    text = (f"# The course's run: Adam, lr 1e-3, from the pretrained checkpoint\n\nBatch 100, random crop + flip, "
            f"trained on the whole training split of --data-dir and tested on its test split "
            f"(the course: CIFAR-10's 10,000 test images).\n"
            f"{note}\n{markdown_table(header, [row])}")
    path = cli.write_atomically(out / "results.md", text.encode())
    print(f"\n{text}\nWrote {path}", flush=True)


def figures(args) -> None:
    """(Re)make the figures of existing run folders."""
    for run in args.runs:
        write_run_figures(Path(run), args.data_dir, args.device, args.precision)


# ------------------------------------------------------------------- command line

def add_common(parser: argparse.ArgumentParser, epochs_help: str, out: str) -> None:
    """The flags every experiment takes."""
    parser.add_argument("--epochs", type=cli.positive_int,
                        help=f"{epochs_help}; fewer makes a shortened run, and the table says so")
    parser.add_argument("--data-dir", help="offline CIFAR-10: DIR/cifar-10-batches-py or DIR/train/<class>/ "
                        "(default: download into data/)")
    parser.add_argument("--out", help=f"folder for the runs, figures and results.md (default: {out})")
    parser.add_argument("--device", help=speed.DEVICE_HELP)
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one of the reports' experiments and write its figures and "
                                     "results table. Running a command again resumes its unfinished runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("three-class", help="VGG16-BN vs CIFAR-stem ResNet-50 on airplane, automobile, bird",
                            description="VGG16-BN (20 epochs) and the CIFAR-stem ResNet-50 (15 epochs) on 3 classes, "
                            "the reports' recipe.")
    add_common(p, "epochs for every model (default: the report's, 20 for vgg16-course and 15 for resnet50-cifar)",
               "runs/three-class")
    p.add_argument("--models", nargs="+", choices=list(THREE_CLASS_EPOCHS), default=list(THREE_CLASS_EPOCHS),
                   help="models to train (default: both); the table lists every model already run in --out")
    p.add_argument("--val-per-class", type=cli.positive_int, default=1000,
                   help="training images per class held out for validation "
                   "(default: 1000: 12,000 train / 3,000 validation)")
    p.set_defaults(handler=three_class)

    p = commands.add_parser("scratch-vs-pretrained",
                            help="the assignment's ResNet-50 from scratch vs from the pretrained checkpoint",
                            description="ResNet-50 (resnet.py) from random weights and from the checkpoint, "
                            "same recipe and epochs.")
    add_common(p, f"epochs of each run (default: the report's {SCRATCH_EPOCHS})", "runs/scratch-vs-pretrained")
    p.add_argument("--checkpoint", default="checkpoints/resnet50_cifar10.pt",
                   help="pretrained weights (default: checkpoints/resnet50_cifar10.pt)")
    p.add_argument("--val-per-class", type=cli.positive_int, default=500,
                   help="training images per class held out for validation; must be the checkpoint's (default: 500)")
    p.set_defaults(handler=scratch_vs_pretrained)

    p = commands.add_parser("course-run", help="main.py --optimizer adam --lr 1e-3 --schedule constant: the course's "
                            "1-epoch fine-tuning, then the test accuracy",
                            description="The course's run: fine-tune the pretrained ResNet-50 with Adam (lr 1e-3), "
                            "then test it.")
    add_common(p, f"fine-tuning epochs (default: the course's {COURSE_EPOCHS})", "runs/course-run")
    p.add_argument("--checkpoint",
                   help="pretrained weights (default: main.py's, checkpoints/resnet50_cifar10.pt next to main.py)")
    p.set_defaults(handler=course_run)

    p = commands.add_parser("figures", help="(re)make the figures of run folders (history.json and best.pt)",
                            description="Write history.png, history.csv, predictions.png and confusion.png "
                            "into each run folder.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder written by train.py or python -m experiments.reports, "
                   "e.g. runs/three-class/vgg16-course")
    p.add_argument("--data-dir",
                   help="the --data-dir the run was trained with (its validation split is re-made from it)")
    p.add_argument("--device", help=speed.DEVICE_HELP)
    p.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP)
    p.set_defaults(handler=figures)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if distributed.launched() and args.handler in (course_run, figures) and int(os.environ["WORLD_SIZE"]) > 1:
        raise cli.UserError(f"{args.command} runs in one process (main.py, the students' run, stays one process; "
                               "figures need no training): start it with "
                               f"python -m experiments.reports {args.command} ..., not torchrun.")
    device = distributed.rank_device(args.device)
    with distributed.process_group(device):  # once for all the runs of the experiment (train.py joins it)
        args.handler(args)


if __name__ == "__main__":
    cli.run_cli(main)
