"""Where a training step's time goes: torch.profiler over a few steps of main.py's loop, grouped by kind of work.

    python -m experiments.profile_step                 # ResNet-50, batch 100, the path speed.choose picks here
    python -m experiments.profile_step --precision fp32 --steps 5

Runs train_one_epoch (the loop main.py runs) on synthetic uint8 images through utils.Batches, so augmentation
and normalization are in the profile as they are in a real epoch. Prints the operators that take the most time,
then the same time grouped into convolutions, matrix multiplies, batch-norm, ReLU, the optimizer,
augmentation and data movement, and the machine's measured GEMM rate in the step's precision as the yardstick.
"""
import argparse
import time

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

import utils
from course import cli, models, speed
from course.loops import MOMENTUM, train_one_epoch

# Operator name fragments -> the kind of work; the first match wins, so the specific ones come first.
KINDS = (
    ("convolution", ("convolution", "conv2d")),
    ("batch-norm", ("batch_norm",)),
    ("ReLU", ("relu", "threshold", "clamp_min")),
    ("pooling", ("pool",)),
    ("matmul (1x1 convs, fc)", ("addmm", "mm", "linear", "matmul", "bmm")),
    ("optimizer (SGD)", ("_foreach", "sgd", "zero_")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("augmentation", ("randint", "rand", "randperm", "pad", "where", "flip", "index", "arange")),
    ("data movement (copy, layout, dtype)", ("copy_", "to_copy", "_to_", "clone", "contiguous", "permute", "cat")),
    ("elementwise", ("add", "mul", "div", "sub", "fill_", "sum", "mean", "max", "argmax", "eq")),
)


def kind_of(name: str) -> str:
    """The kind of work of one operator, by its name."""
    name = name.lower()
    return next((kind for kind, parts in KINDS if any(part in name for part in parts)), "other")


def gemm_gflops(precision: str, size: int = 2048, repeats: int = 5) -> float:
    """The machine's rate on one large square matrix multiply in this precision: the yardstick of the step."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e9


def steps_of_synthetic_images(steps: int, batch_size: int, config: speed.Config) -> utils.Batches:
    """Training batches of random uint8 images, augmented and normalized as a real epoch's."""
    images = torch.randint(0, 256, (steps * batch_size, 3, 32, 32), dtype=torch.uint8)
    batches = utils.Batches(images, torch.randint(0, 10, (steps * batch_size,)), batch_size, "cpu", train=True)
    batches.channels_last = config.channels_last
    return batches


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Profile main.py's training step by kind of work (CPU).")
    parser.add_argument("--model", choices=list(models.MODELS), default="resnet50", help="default: resnet50")
    parser.add_argument("--batch-size", type=cli.positive_int, default=100, help="default: 100, as main.py")
    parser.add_argument("--steps", type=cli.positive_int, default=5, help="steps profiled, after 3 (default: 5)")
    parser.add_argument("--precision", choices=speed.PRECISIONS, default="auto", help=speed.PRECISION_HELP)
    parser.add_argument("--top", type=cli.positive_int, default=15, help="operators listed (default: 15)")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    speed.seed_everything(0)
    choice = speed.choose(args.model, True, device, args.precision)
    print(f"{speed.device_name(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}\n"
          f"{choice.line()}", flush=True)
    model = speed.prepare(models.build_model(args.model, 10), device, choice.config)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=MOMENTUM, weight_decay=5e-4)
    warm_up, profiled = (steps_of_synthetic_images(steps, args.batch_size, choice.config) for steps in (3, args.steps))
    train_one_epoch(model, warm_up, optimizer, nn.CrossEntropyLoss(), device, 1, 1, config=choice.config, quiet=True)
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_one_epoch(model, profiled, optimizer, nn.CrossEntropyLoss(), device, 1, 1, config=choice.config,
                        quiet=True)
    wall = time.perf_counter() - started
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)  # microseconds, over the profiled steps
    print(f"\n{args.steps} steps of {args.batch_size} images: {args.steps * args.batch_size / wall:.0f} img/s under "
          f"the profiler\n\n| operator | kind | ms per step | share |\n|---|---|---|---|")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"| {event.key} | {kind_of(event.key)} | {event.self_cpu_time_total / 1e3 / args.steps:.1f} | "
              f"{100 * event.self_cpu_time_total / total:.1f} % |")
    kinds: dict[str, float] = {}
    for event in events:
        kinds[kind_of(event.key)] = kinds.get(kind_of(event.key), 0.0) + event.self_cpu_time_total
    print("\n| kind of work | ms per step | share |\n|---|---|---|")
    for kind, micros in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {micros / 1e3 / args.steps:.1f} | {100 * micros / total:.1f} % |")
    rate = gemm_gflops(choice.config.precision)
    # a ResNet-50 training image: ~0.22 GFLOP forward (110 M multiply-adds), about twice that backward
    flops = 3 * 2 * 110e6 * args.steps * args.batch_size / wall / 1e9
    print(f"\nGEMM yardstick ({choice.config.precision}, 2048 x 2048): {rate:.0f} GFLOP/s; the step's useful work: "
          f"about {flops:.0f} GFLOP/s ({100 * flops / rate:.0f} % of it)")


if __name__ == "__main__":
    cli.run_cli(main)
