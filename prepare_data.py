"""Split an image-folder copy of CIFAR-10's training images into train/ and a held-out test/.

    tar xzf PATH/TO/cifar10-train-jpg.tar.gz -C data/   # the course's JPEG archive of the training images
    python prepare_data.py                 # data/cifar10-jpg/train/ -> data/cifar10-split/{train,test}/

The held-out images are exactly train.py's validation split (same function, same
seed), so `python main.py --data-dir data/cifar10-split` tests the shipped
checkpoint on images it never trained on.
"""
import argparse
import os
import shutil
from pathlib import Path

import torch

import utils
from course import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Hold out a class-balanced part of CIFAR-10's training images "
                                     "as a test split.")
    parser.add_argument("--source", default="data/cifar10-jpg",
                        help="folder holding train/<class>/ images (default: data/cifar10-jpg)")
    parser.add_argument("--out", default="data/cifar10-split",
                        help="new folder to write train/ and test/ into (default: data/cifar10-split)")
    parser.add_argument("--val-per-class", type=cli.positive_int, default=500,
                        help="images per class to hold out (default: 500, as train.py)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed that picks them (default: 0, as train.py)")
    return parser.parse_args(argv)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link when the file system allows it (no extra space), copy otherwise."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def main(argv=None) -> None:
    args = parse_args(argv)
    source, out = Path(args.source) / "train", Path(args.out)
    if not source.is_dir():
        archive = utils.find_archive()
        how = f"`tar xzf {archive} -C data`" if archive else "extract your copy (e.g. `tar xzf ARCHIVE -C data`)"
        raise cli.UserError(f"{source} not found: --source must hold train/<class>/ images. First {how}, "
                               "then run this command again.")
    if out.exists():
        raise cli.UserError(f"{out} already exists; remove it or choose another --out.")
    items = utils.list_image_folder(source)
    labels = torch.tensor([label for _, label in items])
    held_out = set(utils.validation_indices(labels, args.val_per_class, args.split_seed).tolist())
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for index, (path, label) in enumerate(items):
            utils.read_image(path)  # a damaged image stops us here, not main.py later
            folder = partial / ("test" if index in held_out else "train") / utils.CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            link_or_copy(path, folder / path.name)
    except OSError as error:  # a full disk, a read-only folder
        shutil.rmtree(partial, ignore_errors=True)
        raise cli.UserError(f"cannot write {error.filename or partial}: {error.strerror or error}. Free some "
                               "space or choose another --out, then run this command again.") from None
    except BaseException:  # a damaged image (UserError), Ctrl-C: leave no half-written copy behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)  # all or nothing
    print(f"Wrote {len(items) - len(held_out)} training and {len(held_out)} held-out test images to "
          f"{cli.display_path(out)}")


if __name__ == "__main__":
    cli.run_cli(main)
