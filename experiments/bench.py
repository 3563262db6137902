"""Training and evaluation throughput: the course's plain way against the fastest path for this machine.

    python -m experiments.bench        # ResNet-50, batch 100, on the best device
    python -m experiments.bench --model vgg16 --steps 4
    python -m experiments.bench --accuracy-check data/cifar10-split   # same accuracy both ways?
    python -m experiments.bench --candidates   # every configuration: does speed.choose pick the fastest here?

Runs on synthetic uint8 32x32 images (CIFAR-10's size and type), so no data set is
needed. The fast path is the one speed.choose's rules pick here, evaluated with the batch-norms
folded; --candidates times every configuration instead, to check those rules on a new machine.
Each measurement is the median of several repeats after a warm-up, timed around the real loops
(data pipeline included). Last line, for scripts:
cpu=... precision=... train_baseline_img_s=... train_img_s=... train_speedup=...
eval_baseline_img_s=... eval_img_s=... eval_speedup=... peak_rss_gb=...
"""
import argparse
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image

import utils
from course import cli, models, speed
from course.loops import EVAL_BATCH_SIZE, MOMENTUM, evaluate, train_one_epoch


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
        self.loader, self.device, self.batch_size = loader, device, loader.batch_size

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
    parser = argparse.ArgumentParser(description="Measure training and evaluation throughput (images/s) "
                                     "on synthetic CIFAR-sized data.")
    parser.add_argument("--model", choices=models.MODELS, default="resnet50",
                        help="architecture to measure (default: resnet50)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=100,
                        help="training batch size, as main.py (default: 100)")
    for flag, default, words in (("--steps", 6, "training steps timed in each repeat"),
                                 ("--repeats", 3, "repeats of each measurement; the median is reported"),
                                 ("--eval-images", 3000, "images per evaluation repeat")):
        parser.add_argument(flag, type=cli.positive_int, default=default, help=f"{words} (default: {default})")
    parser.add_argument("--device", help=speed.DEVICE_HELP)
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP)
    parser.add_argument("--candidates", action="store_true",
                        help="instead of the course's way against the chosen path: time every configuration "
                        "(precision x 1x1 matmuls, channels_last) on the fast path and mark speed.choose's pick")
    parser.add_argument("--accuracy-check", metavar="DATA_DIR",
                        help="instead of timing: train the same initial model both ways on real images "
                        "(DATA_DIR/train, tested on DATA_DIR/test) and print both test accuracies")
    parser.add_argument("--check-classes", default="airplane,automobile,bird",
                        help="classes of the accuracy check (default: airplane,automobile,bird)")
    for flag, default, words in (("--check-images", 3000, "training images"), ("--check-epochs", 3, "epochs"),
                                 ("--check-seeds", 3, "seeds (initial weights, order, augmentation)")):
        parser.add_argument(flag, type=cli.positive_int, default=default,
                            help=f"{words} of the accuracy check (default: {default})")
    return parser.parse_args(argv)


def median_rate(images_per_run: int, run, repeats: int) -> float:
    """Images per second: one warm-up run, then the median of `repeats` timed runs."""
    times = []
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
    """Train the same initial models the course's way and on the chosen fast path; compare test accuracy over seeds."""
    classes = utils.parse_classes(args.check_classes)
    train_images, train_labels = utils.load_data("train", args.accuracy_check, classes)
    test_images, test_labels = utils.load_data("test", args.accuracy_check, classes)
    keep = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(0))[:args.check_images]
    train_images, train_labels = train_images[keep], train_labels[keep]
    train_choice = speed.choose(args.model, True, device, args.precision)
    eval_choice = speed.choose(args.model, False, device, args.precision)
    print(f"Accuracy check: {args.model}, {len(keep)} training images of {', '.join(classes)}, {len(test_labels)} test "
          f"images, {args.check_epochs} epochs, SGD lr 0.01, batch {args.batch_size}, seeds 0-{args.check_seeds - 1}\n"
          f"{train_choice.line()}\n{eval_choice.line()}", flush=True)
    accuracy = {"fp32": [], "chosen": []}
    for seed in range(args.check_seeds):
        speed.seed_everything(seed)
        initial = models.build_model(args.model, len(classes)).state_dict()
        for path in accuracy:
            speed.seed_everything(seed)
            model = models.build_model(args.model, len(classes))
            model.load_state_dict(initial)
            if path == "fp32":  # the course's way: fp32 NCHW, PIL transforms, DataLoader
                train_config = eval_config = speed.COURSE_WAY
                train_data = course_loader(train_images, train_labels, args.batch_size, device, train=True)
                test_data = course_loader(test_images, test_labels, EVAL_BATCH_SIZE, device, train=False)
            else:
                train_config, eval_config = train_choice.config, eval_choice.config
                train_data = utils.Batches(train_images, train_labels, args.batch_size, device, train=True, seed=seed)
                test_data = utils.Batches(test_images, test_labels, EVAL_BATCH_SIZE, device, train=False)
                train_data.channels_last = train_config.channels_last
                test_data.channels_last = eval_config.channels_last
            model = speed.prepare(model, device, train_config)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM, weight_decay=5e-4)
            for epoch in range(1, args.check_epochs + 1):
                train_one_epoch(model, train_data, optimizer, nn.CrossEntropyLoss(), device, epoch, args.check_epochs,
                                config=train_config, quiet=True)
            model = speed.prepare(model, device, eval_config)
            accuracy[path].append(evaluate(model, test_data, device, eval_config, fold=path != "fp32").accuracy)
            print(f"  seed {seed}, {path} path: {accuracy[path][-1]:.2f} %", flush=True)
    mean = {path: statistics.mean(values) for path, values in accuracy.items()}
    spread = {path: statistics.pstdev(values) for path, values in accuracy.items()}
    print(f"check_fp32_acc={mean['fp32']:.2f}+-{spread['fp32']:.2f} "
          f"check_chosen_acc={mean['chosen']:.2f}+-{spread['chosen']:.2f}")


def timed_path(args, device, images, labels, train_config: speed.Config, eval_config: speed.Config,
               course: bool) -> tuple[float, float]:
    """Training and evaluation images/s of one path: the course's loaders (DataLoader, PIL) or ours (uint8 Batches)."""
    n_train = args.batch_size * args.steps
    train_images, train_labels = utils.to_tensors(images[:n_train], labels[:n_train])
    eval_images, eval_labels = utils.to_tensors(images[:args.eval_images], labels[:args.eval_images])
    if course:
        train_data = course_loader(train_images, train_labels, args.batch_size, device, train=True)
        eval_data = course_loader(eval_images, eval_labels, EVAL_BATCH_SIZE, device, train=False)
    else:
        train_data = utils.Batches(train_images, train_labels, args.batch_size, device, train=True)
        eval_data = utils.Batches(eval_images, eval_labels, EVAL_BATCH_SIZE, device, train=False)
        train_data.channels_last, eval_data.channels_last = train_config.channels_last, eval_config.channels_last
    model = speed.prepare(models.build_model(args.model, 10), device, train_config)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=MOMENTUM)

    def train() -> None:
        train_one_epoch(model, train_data, optimizer, nn.CrossEntropyLoss(), device, 1, 1, config=train_config,
                        quiet=True)

    train_rate = median_rate(n_train, train, args.repeats)
    model = speed.prepare(model, device, eval_config)
    eval_rate = median_rate(args.eval_images, lambda: evaluate(model, eval_data, device, eval_config, fold=not course),
                             args.repeats)
    return train_rate, eval_rate


def time_candidates(args, device, images, labels, train_pick: speed.Config, eval_pick: speed.Config) -> None:
    """Every configuration on the fast path, training and evaluation; '<-' marks what speed.choose picks here."""
    precisions = ["fp32", "bf16"] if speed.native_bf16(device) or args.precision == "bf16" else ["fp32"]
    layouts = [speed.Config("fp32", False, False)] + [speed.Config(precision, True, matmul)
                                                       for precision in precisions for matmul in (False, True)]
    print(f"\n| configuration | training images/s | evaluation images/s (batch {EVAL_BATCH_SIZE}) |\n|---|---|---|")
    for config in layouts:
        train_rate, eval_rate = timed_path(args, device, images, labels, config, config, False)
        print(f"| {config.describe()} | {train_rate:.1f}{' <-' if config == train_pick else ''} | "
              f"{eval_rate:.0f}{' <-' if config == eval_pick else ''} |", flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = speed.pick_device(args.device)
    speed.seed_everything(0)
    if args.accuracy_check:
        return accuracy_check(args, device)
    name = speed.device_name(device)
    print(f"Benchmark: {args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, "
          f"device {device} ({name}), {torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    train_choice = speed.choose(args.model, True, device, args.precision)
    eval_choice = speed.choose(args.model, False, device, args.precision)
    print(f"{train_choice.line()}\n{eval_choice.line()}", flush=True)
    images = np.random.randint(0, 256, (max(args.batch_size * args.steps, args.eval_images), 32, 32, 3), dtype=np.uint8)
    labels = np.random.randint(0, 10, len(images))
    if args.candidates:
        return time_candidates(args, device, images, labels, train_choice.config, eval_choice.config)

    # The course's way: fp32, NCHW, eager, per-image PIL transforms through a DataLoader.
    train_baseline, eval_baseline = timed_path(args, device, images, labels, speed.COURSE_WAY, speed.COURSE_WAY, True)
    print(f"  course's way: training {train_baseline:.1f} img/s, evaluation {eval_baseline:.0f} img/s", flush=True)
    # The chosen path: uint8 tensors, batched augmentation, and the configuration speed.choose picked.
    train_fast, eval_fast = timed_path(args, device, images, labels, train_choice.config, eval_choice.config, False)
    print(f"  chosen path:  training {train_fast:.1f} img/s, evaluation {eval_fast:.0f} img/s", flush=True)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux reports KiB

    precision = train_choice.config.precision if train_choice.config.precision == eval_choice.config.precision else \
        f"{train_choice.config.precision}-train,{eval_choice.config.precision}-eval"
    print(f"\n| path | training images/s | evaluation images/s (batch {EVAL_BATCH_SIZE}) |\n|---|---|---|\n"
          f"| the course's (fp32 NCHW eager, PIL transforms, DataLoader) | {train_baseline:.1f} | "
          f"{eval_baseline:.0f} |\n"
          f"| chosen here: {train_choice.config.describe()} / {eval_choice.config.describe()} | {train_fast:.1f} | "
          f"{eval_fast:.0f} |\n")
    print(f"cpu={name.replace(' ', '_')} precision={precision} train_baseline_img_s={train_baseline:.1f} "
          f"train_img_s={train_fast:.1f} train_speedup={train_fast / train_baseline:.2f} "
          f"eval_baseline_img_s={eval_baseline:.0f} eval_img_s={eval_fast:.0f} "
          f"eval_speedup={eval_fast / eval_baseline:.2f} peak_rss_gb={peak_rss_gb:.2f}")


if __name__ == "__main__":
    cli.run_cli(main)
