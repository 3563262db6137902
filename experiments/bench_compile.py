"""torch.compile against eager on the training epoch (or evaluation): is the compile time paid back within one epoch?

    python -m experiments.bench_compile                          # ResNet-50, batch 128, 20 timed steps
    python -m experiments.bench_compile --model airbench --batch-size 1024 --steps 4
    python -m experiments.bench_compile --evaluation --batch-size 500 --steps 8

Both runs go through train.py's own `train_one_epoch` on synthetic uint8 images, with the configuration
speed.choose picks for the machine. The compiled run's first step includes the compilation; the epoch's time
is projected from it and the median of the later steps, for an epoch of --epoch-images.
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn as nn

import utils
from course import cli, models, speed
from course.loops import MOMENTUM, evaluate, train_one_epoch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time train.py's training epoch eager and under torch.compile "
                                     "(compile time included) on synthetic CIFAR-sized data.")
    parser.add_argument("--model", choices=models.MODELS, default="resnet50", help="architecture (default: resnet50)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128, help="batch size (default: 128)")
    parser.add_argument("--steps", type=cli.positive_int, default=20,
                        help="steps timed after the first one (default: 20)")
    parser.add_argument("--epoch-images", type=cli.positive_int, default=45000,
                        help="training images of the projected epoch (default: 45000)")
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP)
    parser.add_argument("--evaluation", action="store_true",
                        help="time evaluate() (inference, no gradients) instead of the training epoch")
    return parser.parse_args(argv)


class TimedSteps:
    """Batches that record when each one is asked for: the time between two is one training step."""

    def __init__(self, batches):
        self.batches, self.times = batches, []
        self.batch_size = batches.batch_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.times.append(time.perf_counter())
            yield batch
        self.times.append(time.perf_counter())


def time_steps(args, compiled: bool, device) -> tuple[float, float]:
    """(seconds of the first step, median seconds of the later steps)."""
    choice = speed.choose(args.model, not args.evaluation, device, args.precision)
    torch.manual_seed(0)
    model = speed.prepare(models.build_model(args.model, 10), device, choice.config)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=MOMENTUM)
    images = torch.from_numpy(np.random.randint(0, 256, (args.batch_size * (args.steps + 1), 3, 32, 32),
                                                dtype=np.uint8))
    labels = torch.randint(0, 10, (len(images),))
    batches = utils.Batches(images, labels, args.batch_size, device, train=not args.evaluation)
    batches.channels_last = choice.config.channels_last
    timed = TimedSteps(batches)
    run = torch.compile(model) if compiled else model
    if args.evaluation:
        evaluate(run, timed, device, choice.config)
    else:
        train_one_epoch(run, timed, optimizer, nn.CrossEntropyLoss(), device, 1, 1, config=choice.config, quiet=True)
    steps = np.diff(timed.times)
    return float(steps[0]), statistics.median(steps[1:].tolist())


def main(argv=None) -> None:
    args = parse_args(argv)
    device = speed.pick_device()
    steps_per_epoch = -(-args.epoch_images // args.batch_size)
    print(f"torch.compile check: {args.model}, {'evaluation' if args.evaluation else 'training'}, "
          f"batch {args.batch_size}, {speed.device_name(device)}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    epoch = {}
    for compiled in (False, True):
        first, step = time_steps(args, compiled, device)
        name = "compiled" if compiled else "eager"
        epoch[name] = first + step * (steps_per_epoch - 1)
        print(f"  {name}: first step {first:.1f} s, then {step:.3f} s a step ({args.batch_size / step:.0f} img/s); "
              f"one epoch of {args.epoch_images} images ~ {cli.format_seconds(epoch[name])}", flush=True)
    print(f"compile_speedup_per_epoch={epoch['eager'] / epoch['compiled']:.3f}")


if __name__ == "__main__":
    cli.run_cli(main)
