"""Training and evaluation throughput: the course's plain way against this project's default path.

    python bench.py                    # ResNet-50, batch 100, on the best device
    python bench.py --model vgg16 --steps 4
    python bench.py --accuracy-check data/cifar10-split   # same accuracy both ways?

Runs on synthetic uint8 32x32 images (CIFAR-10's size and type), so no data set is
needed. Each measurement is the median of several repeats after a warm-up, timed
around the real loops of train.py (data pipeline included). Last line, for scripts:
train_baseline_img_s=... train_img_s=... train_speedup=... eval_img_s=... peak_rss_gb=...
"""
import argparse
import contextlib
import io
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image

import utils
from train import evaluate, run_cli, train_one_epoch


class PILDataset(torch.utils.data.Dataset):
    """The course's input pipeline: one PIL image at a time through torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, train: bool = True):
        self.images, self.labels = images, labels
        augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
        self.transform = T.Compose([*augment, T.ToTensor(), T.Normalize(utils.MEAN, utils.STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class OnDevice:
    """Wraps a DataLoader so that its batches arrive on the device, as utils.Batches' do."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, labels in self.loader:
            yield images.to(self.device), labels.to(self.device)


def course_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device, train: bool) -> OnDevice:
    """The course's DataLoader over uint8 (N, 3, 32, 32) images."""
    dataset = PILDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), train)
    return OnDevice(torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train), device)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure training and evaluation throughput (images/s) on synthetic CIFAR-sized data.")
    parser.add_argument("--model", choices=utils.MODELS, default="resnet50", help="architecture to measure (default: resnet50)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=100, help="training batch size, as main.py (default: 100)")
    parser.add_argument("--steps", type=utils.positive_int, default=6, help="training steps timed in each repeat (default: 6)")
    parser.add_argument("--repeats", type=utils.positive_int, default=3, help="repeats of each measurement; the median is reported (default: 3)")
    parser.add_argument("--eval-images", type=utils.positive_int, default=3000, help="images per evaluation repeat (default: 3000)")
    parser.add_argument("--device", help=utils.DEVICE_HELP)
    parser.add_argument("--accuracy-check", metavar="DATA_DIR", help="instead of timing: train the same initial model both ways "
                        "on real images (DATA_DIR/train, tested on DATA_DIR/test) and print both test accuracies")
    parser.add_argument("--check-classes", default="airplane,automobile,bird", help="classes of the accuracy check (default: airplane,automobile,bird)")
    parser.add_argument("--check-images", type=utils.positive_int, default=3000, help="training images of the accuracy check (default: 3000)")
    parser.add_argument("--check-epochs", type=utils.positive_int, default=3, help="epochs of the accuracy check (default: 3)")
    parser.add_argument("--check-seeds", type=utils.positive_int, default=3, help="seeds (initial weights, order, augmentation) of the check (default: 3)")
    return parser.parse_args(argv)


def median_rate(images_per_run: int, run, repeats: int) -> float:
    """Images per second: one warm-up run, then the median of `repeats` timed runs."""
    times = []
    with contextlib.redirect_stdout(io.StringIO()):  # keep the loops' own lines out of the table
        run()
        for _ in range(repeats):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return images_per_run / statistics.median(times)


def accuracy_check(args, device) -> None:
    """Train the same initial models the course's way and the default way; compare test accuracy over seeds."""
    classes = utils.parse_classes(args.check_classes)
    train_images, train_labels = utils.load_data("train", args.accuracy_check, classes)
    test_images, test_labels = utils.load_data("test", args.accuracy_check, classes)
    keep = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(0))[:args.check_images]
    train_images, train_labels = train_images[keep], train_labels[keep]
    print(f"Accuracy check: {args.model}, {len(keep)} training images of {', '.join(classes)}, {len(test_labels)} test images, "
          f"{args.check_epochs} epochs, SGD lr 0.01, batch {args.batch_size}, seeds 0-{args.check_seeds - 1}", flush=True)
    accuracy = {"baseline": [], "default": []}
    for seed in range(args.check_seeds):
        utils.seed_everything(seed)
        initial = utils.build_model(args.model, len(classes)).state_dict()
        for path in accuracy:
            utils.seed_everything(seed)
            model = utils.build_model(args.model, len(classes))
            model.load_state_dict(initial)
            if path == "baseline":
                model = model.to(device)
                train_data = course_loader(train_images, train_labels, args.batch_size, device, train=True)
                test_data = course_loader(test_images, test_labels, 500, device, train=False)
            else:
                model = utils.prepare_for_speed(model, device)
                train_data = utils.Batches(train_images, train_labels, args.batch_size, device, train=True, seed=seed)
                test_data = utils.Batches(test_images, test_labels, 500, device, train=False)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            with contextlib.redirect_stdout(io.StringIO()):
                for epoch in range(1, args.check_epochs + 1):
                    train_one_epoch(model, train_data, optimizer, nn.CrossEntropyLoss(), device, epoch, args.check_epochs)
                result, _ = evaluate(model, test_data, device, "test")
            accuracy[path].append(result)
            print(f"  seed {seed}, {path} path: {result:.2f} %", flush=True)
    mean = {path: statistics.mean(values) for path, values in accuracy.items()}
    spread = {path: statistics.pstdev(values) for path, values in accuracy.items()}
    print(f"check_baseline_acc={mean['baseline']:.2f}+-{spread['baseline']:.2f} check_default_acc={mean['default']:.2f}+-{spread['default']:.2f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    device = utils.pick_device(args.device)
    utils.configure_backends(device)
    utils.seed_everything(0)
    if args.accuracy_check:
        return accuracy_check(args, device)
    n_train = args.batch_size * args.steps
    images = np.random.randint(0, 256, (max(n_train, args.eval_images), 32, 32, 3), dtype=np.uint8)
    labels = np.random.randint(0, 10, len(images))
    criterion = nn.CrossEntropyLoss()
    print(f"Benchmark: {args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)

    # 1. The course's way: fp32, NCHW, eager, per-image transforms through a DataLoader.
    train_images, train_labels = utils.to_tensors(images[:n_train], labels[:n_train])
    model = utils.build_model(args.model, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loader = course_loader(train_images, train_labels, args.batch_size, device, train=True)
    baseline = median_rate(n_train, lambda: train_one_epoch(model, loader, optimizer, criterion, device, 1, 1), args.repeats)
    print(f"  baseline training done: {baseline:.1f} images/s", flush=True)

    # 2. and 3. The default path of main.py: uint8 tensors, batched augmentation, channels_last, 1x1 convs as matmuls.
    model = utils.prepare_for_speed(utils.build_model(args.model, 10), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    train_batches = utils.Batches(train_images, train_labels, args.batch_size, device, train=True)
    fast = median_rate(n_train, lambda: train_one_epoch(model, train_batches, optimizer, criterion, device, 1, 1), args.repeats)
    print(f"  default training done: {fast:.1f} images/s", flush=True)
    eval_batches = utils.Batches(*utils.to_tensors(images[:args.eval_images], labels[:args.eval_images]), 500, device, train=False)
    eval_rate = median_rate(args.eval_images, lambda: evaluate(model, eval_batches, device), args.repeats)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux reports KiB

    print(f"\n| path | images/s |\n|---|---|\n| training, baseline (fp32 NCHW eager, PIL transforms, DataLoader) | {baseline:.1f} |\n"
          f"| training, default path | {fast:.1f} |\n| evaluation, default path (batch 500) | {eval_rate:.0f} |\n")
    print(f"train_baseline_img_s={baseline:.1f} train_img_s={fast:.1f} train_speedup={fast / baseline:.2f} "
          f"eval_img_s={eval_rate:.0f} peak_rss_gb={peak_rss_gb:.2f}")


if __name__ == "__main__":
    run_cli(main)
