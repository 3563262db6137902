"""Figures and tables of training runs: learning curves, comparisons, predictions, confusion matrices.

Every function writes its file atomically (a temporary file, then a rename), so an
interrupted run never leaves half a PNG, and returns the path it wrote.
"""
import csv
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw into files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from course.cli import UserError, write_atomically  # noqa: E402

LABELS = {"train_loss": "training loss", "val_loss": "validation loss", "train_accuracy": "training accuracy (%)",
          "val_accuracy": "validation accuracy (%)", "lr": "learning rate", "seconds": "seconds per epoch"}


def save_figure(fig, path) -> Path:
    """Render a figure to PNG, write it atomically and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_atomically(path, buffer.getvalue())


def as_array(values) -> np.ndarray:
    """A NumPy array from a list, an array or a (CPU or GPU) tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def check_history(history: list[dict]) -> None:
    """A history must hold at least one epoch with an 'epoch' number."""
    if not history or any("epoch" not in row for row in history):
        raise UserError("the history is empty or has rows without an 'epoch': nothing to plot.")


def epoch_axis(ax) -> None:
    """Whole-epoch ticks on the x axis, even for a 1-epoch run."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def plot_history(history: list[dict], path, title: str) -> Path:
    """Loss (left) and accuracy (right) per epoch, training and validation."""
    check_history(history)
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, kind in zip(axes, ("loss", "accuracy"), strict=True):
        for split, style in (("train", "o-"), ("val", "s-")):
            key = f"{split}_{kind}"
            if all(key in row for row in history):
                ax.plot(epochs, [row[key] for row in history], style, label=LABELS[key].removesuffix(" (%)"))
        epoch_axis(ax)
        ax.set_ylabel("accuracy (%)" if kind == "accuracy" else "cross-entropy loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_comparison(histories: dict[str, list[dict]], path, title: str, metric: str = "val_accuracy") -> Path:
    """One metric per epoch for several runs on one figure."""
    if not histories:
        raise UserError("no runs to compare.")
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for name, history in histories.items():
        check_history(history)
        if not all(metric in row for row in history):
            raise UserError(f"run '{name}' has no '{metric}' in its history; choose one of: {', '.join(history[0])}.")
        ax.plot([row["epoch"] for row in history], [row[metric] for row in history], "o-", label=name)
    epoch_axis(ax)
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_predictions(images_uint8, true, pred, class_names, path, columns: int = 8) -> Path:
    """A grid of images (N, 3, 32, 32) titled with true and predicted class; wrong ones in red."""
    images, true, pred = as_array(images_uint8), as_array(true), as_array(pred)
    if images.ndim != 4 or images.shape[1] != 3 or not len(images) == len(true) == len(pred):
        raise UserError(f"plot_predictions needs images (N, 3, H, W) and N labels and predictions; "
                        f"got {images.shape}, {len(true)}, {len(pred)}.")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 0.4 + 1.9 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, images, true, pred, strict=False):  # the grid may have spare cells
        ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
        wrong = int(t) != int(p)
        ax.set_title(f"true: {class_names[int(t)]}\npred: {class_names[int(p)]}", fontsize=8,
                     color="red" if wrong else "black")
        if wrong:  # a red frame as well as the red title
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    errors = int((true != pred).sum())
    fig.suptitle(f"{len(images) - errors} of {len(images)} right (wrong ones in red)")
    return save_figure(fig, path)


def confusion_matrix(true, pred, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    true, pred = as_array(true).astype(np.int64), as_array(pred).astype(np.int64)
    return np.bincount(true * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion(true, pred, class_names, path) -> Path:
    """Confusion matrix with the count in every cell (rows: true class, columns: predicted)."""
    k = len(class_names)
    counts = confusion_matrix(true, pred, k)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * k, 1.0 + 0.7 * k), layout="constrained")
    ax.imshow(counts, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = 100.0 * np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{counts.sum()} images, accuracy {accuracy:.2f} %")
    return save_figure(fig, path)


def save_history_csv(history: list[dict], path) -> Path:
    """One row per epoch, one column per key (in the order they first appear)."""
    check_history(history)
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return write_atomically(path, text.getvalue().encode())
