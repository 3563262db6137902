"""The students' entry point: fine-tune the shipped pretrained ResNet-50 on CIFAR-10, then test it.

    python main.py                       # 1 epoch from checkpoints/resnet50_cifar10.pt
    python main.py --optimizer adam --lr 1e-3   # the course's original run
    python main.py --epochs 0            # only evaluate the checkpoint
    python main.py --help                # every option
"""
import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn

import utils
from train import evaluate, run_cli, train_one_epoch

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fine-tune a pretrained model on CIFAR-10 and report its test accuracy, as in the course assignment.")
    parser.add_argument("--model", choices=utils.MODELS, default="resnet50", help="architecture (default: resnet50)")
    parser.add_argument("--checkpoint", help="pretrained weights to start from (default: checkpoints/<model>_cifar10.pt)")
    parser.add_argument("--no-pretrained", action="store_true", help="start from random weights instead of a checkpoint")
    parser.add_argument("--epochs", type=utils.natural_int, default=1, help="fine-tuning epochs; 0 only evaluates (default: 1)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=100, help="mini-batch size (default: 100, as in the course)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd (momentum 0.9) or adam (default: sgd)")
    parser.add_argument("--lr", type=utils.positive_float, default=1e-3, help="learning rate (default: 0.001; the course used adam with 1e-3)")
    parser.add_argument("--data-dir", help="offline CIFAR-10: DIR/cifar-10-batches-py, or DIR/train/<class>/ and DIR/test/<class>/ (default: download into data/)")
    parser.add_argument("--classes", help=utils.CLASSES_HELP)
    parser.add_argument("--out", help="where to save the fine-tuned weights (default: runs/<model>_finetuned.pt; never the pretrained file)")
    parser.add_argument("--device", help=utils.DEVICE_HELP)
    parser.add_argument("--workers", type=utils.natural_int, default=0, help="CPU threads for PyTorch (default: 0 = PyTorch's choice, one per core)")
    parser.add_argument("--seed", type=int, default=0, help="seed for shuffling and augmentation (default: 0)")
    return parser.parse_args(argv)


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum (gentle on a converged model) or Adam (the course's choice)."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def trained_epochs(meta: dict) -> int:
    """Epochs behind a checkpoint, all training stages counted (0 for random weights)."""
    return meta.get("total_epochs", meta.get("epoch", 0))


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.workers:
        torch.set_num_threads(args.workers)
    device = utils.pick_device(args.device)
    utils.configure_backends(device)
    utils.seed_everything(args.seed)
    classes = utils.parse_classes(args.classes)
    checkpoint_path = Path(args.checkpoint or CHECKPOINT_DIR / f"{args.model}_cifar10.pt")
    out_path = Path(args.out or f"runs/{args.model}_finetuned.pt")
    if not args.no_pretrained and out_path.resolve() == checkpoint_path.resolve():
        raise utils.UserError(f"--out {out_path} is the pretrained checkpoint itself; choose another file so it is never overwritten.")

    model = utils.build_model(args.model, len(classes))
    if args.no_pretrained:
        print(f"Starting {args.model} from random weights (--no-pretrained): this is training from scratch, not fine-tuning.")
        meta = {}
    else:
        if not checkpoint_path.is_file():
            raise utils.UserError(f"no pretrained checkpoint at {checkpoint_path}. Make one with `python train.py --model {args.model} "
                                  "--out runs/train` and pass --checkpoint runs/train/best.pt, or pass --no-pretrained to train from scratch.")
        meta = utils.load_checkpoint(checkpoint_path)
        utils.load_weights(model, meta, args.model, classes, checkpoint_path)
        accuracy = f", {meta['accuracy']:.2f} % on its {meta.get('accuracy_split', 'validation split')}" if "accuracy" in meta else ""
        print(f"Loaded pretrained {args.model} from {checkpoint_path} ({trained_epochs(meta)} epochs{accuracy})")
    model = utils.prepare_for_speed(model, device)
    print(f"Device: {device}", flush=True)

    train_images, train_labels = utils.load_data("train", args.data_dir, classes)
    test_images, test_labels = utils.load_data("test", args.data_dir, classes)
    train_batches = utils.Batches(train_images, train_labels, args.batch_size, device, train=True, seed=args.seed)
    test_batches = utils.Batches(test_images, test_labels, 500, device, train=False)

    optimizer = make_optimizer(args.optimizer, model, args.lr)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        train_one_epoch(model, train_batches, optimizer, criterion, device, epoch, args.epochs)
    accuracy, _ = evaluate(model, test_batches, device, "test")

    if args.epochs > 0:
        recipe = {"finetuned_from": str(checkpoint_path) if not args.no_pretrained else None, "epochs": args.epochs,
                  "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed}
        utils.save_checkpoint(out_path, model, {"arch": args.model, "num_classes": len(classes), "classes": list(classes),
                                                "epoch": trained_epochs(meta) + args.epochs, "accuracy": accuracy,
                                                "accuracy_split": "test", "recipe": recipe})
        print(f"Saved the {'trained' if args.no_pretrained else 'fine-tuned'} weights to {out_path}")
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    print(f"Done in {int(minutes)} min {seconds:.0f} s on {device}.")


if __name__ == "__main__":
    run_cli(main)
