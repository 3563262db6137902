"""train.py and experiments/reports.py under torchrun: 2 processes on the CPU (gloo), tiny data.

Each test starts real processes:
`torchrun --standalone --nproc_per_node 2 tests/course/test_ddp.py [TEST FLAGS] --train ARGS` runs this file as a
script (the block at the bottom), which applies the test-only settings it is given and then calls train.py's main
with ARGS, exactly as `torchrun ... train.py ARGS` would (`--experiments ARGS`: experiments/reports.py's main).
Every launch costs seconds (three processes import torch), so the runs that can be shared are.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import fixed_speed_choice, side_by_side

import train
import utils
from course import cli, models, speed

ROOT = Path(__file__).resolve().parents[2]
TIME_KEYS = {"seconds", "train_seconds"}
# the chain of interrupted runs tests the mechanics of torchrun, not a model: the small airbench net (seconds
# less a launch than ResNet-50); the test of the gradients' average keeps the ResNet-50
CHAIN_FLAGS = ("--model", "airbench", "--epochs", "2", "--cutout", "8", "--ema", "0.9", "--lr", "0.05")


def tiny_run(data, out, *extra) -> list[str]:
    """90 training images, a global batch of 32 (16 a rank: 3 steps an epoch, the last of 13 a rank), fp32."""
    return ["--data-dir", str(data), "--out", str(out), "--val-per-class", "3", "--batch-size", "32", "--device", "cpu",
            "--precision", "fp32", *extra]


def launch(processes: int, argv: list[str], *test_flags: str, main: str = "--train") -> subprocess.CompletedProcess:
    """Run this file (train.py's main, or experiments/reports.py's with main="--experiments", with the test
    settings) under torchrun with 2 ranks of 1 thread, or with plain python for 1 process."""
    start = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    # the separator is not "--": torchrun would take that one away
    return subprocess.run([*start, __file__, *test_flags, main, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def ran(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """`result`, after checking that it succeeded (showing its output if not)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_ranks_of_batch_b_take_the_steps_of_one_process_of_batch_2b(tiny_data, tmp_path):
    # Test-only settings (--frozen): no augmentation and batch-norm on its running statistics, so that a step sees
    # the same numbers however the global batch is split; SGD without momentum or weight decay at a small lr.
    flags = ("--epochs", "1", "--lr", "0.002", "--schedule", "constant", "--weight-decay", "0", "--no-nesterov")
    for run in side_by_side(lambda: launch(1, tiny_run(tiny_data, tmp_path / "one", *flags), "--frozen"),
                            lambda: launch(2, tiny_run(tiny_data, tmp_path / "two", *flags), "--frozen")):
        ran(run)  # independent runs, side by side: the 1-process one alone would leave a core idle
    one, two = load(tmp_path / "one" / "last.pt"), load(tmp_path / "two" / "last.pt")
    assert one["recipe"]["world_size"] == 1 and two["recipe"]["world_size"] == 2
    torch.manual_seed(0)  # the weights both runs started from
    start = models.build_model("resnet50", 10).state_dict()
    moved = max((one["model"][k] - start[k]).abs().max().item() for k in start if start[k].is_floating_point())
    apart = max((one["model"][k] - two["model"][k]).abs().max().item() for k in start if start[k].is_floating_point())
    assert moved > 1e-3  # the 3 steps changed the weights...
    # ...in the same way, up to the order of float32 sums: a sum of N terms taken in another order differs by at most
    # N * 2^-24 of the sum of their sizes, under 1e-3 for the N <= 2^14 terms of a gradient here (whatever the CPU's
    # kernels). Ranks that did not average their gradients would each follow half the batch: apart would then be of
    # the order of the movement itself.
    assert apart < 1e-2 * moved


@pytest.fixture(scope="module")
def two_rank_runs(tiny_data, tmp_path_factory) -> dict:
    """A 2-epoch 2-rank run with cutout and EMA, straight through; and the same run interrupted at the start of
    epoch 2 by rank 1 failing (epoch 1 saved, nothing of epoch 2), then resumed to the end."""
    out = tmp_path_factory.mktemp("ddp")
    straight, failed = side_by_side(
        lambda: launch(2, tiny_run(tiny_data, out / "straight", *CHAIN_FLAGS)),
        lambda: launch(2, tiny_run(tiny_data, out / "resumed", *CHAIN_FLAGS), "--fail-on-rank-1-at-epoch", "2"))
    ran(straight)  # independent runs: side by side, each one's imports and rendezvous overlap the other's work
    resumed = ran(launch(2, tiny_run(tiny_data, out / "resumed", *CHAIN_FLAGS, "--resume")))
    return {"out": out, "straight": straight, "failed": failed, "resumed": resumed, "data": tiny_data}


def test_only_rank_0_prints_and_writes(two_rank_runs):
    out, printed = two_rank_runs["out"] / "straight", two_rank_runs["straight"].stdout
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt"]
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1, 2]
    for line in ("Epoch [1/2], Step [3/3] Loss: ", "Epoch [2/2], Step [3/3] Loss: ", "epoch 2: train loss"):
        assert printed.count(line) == 1, printed
    assert printed.count("Accuracy of the model on the validation images") == 2
    recipe = load(out / "last.pt")["recipe"]
    assert recipe["world_size"] == 2 and recipe["batch_size"] == 32  # the global batch


def test_an_interrupted_run_resumes_to_the_history_of_an_uninterrupted_one(two_rank_runs):
    assert two_rank_runs["failed"].returncode != 0
    straight = json.loads((two_rank_runs["out"] / "straight" / "history.json").read_text())
    resumed = json.loads((two_rank_runs["out"] / "resumed" / "history.json").read_text())
    assert "Resuming" in two_rank_runs["resumed"].stdout
    assert [row.keys() - TIME_KEYS for row in resumed] == [row.keys() - TIME_KEYS for row in straight]
    for row_straight, row_resumed in zip(straight, resumed, strict=True):
        for key in row_straight.keys() - TIME_KEYS - {"speed"}:
            expected = row_straight[key]  # a number, or a word (train.py's "kept": which weights --ema kept)
            expected = pytest.approx(expected, rel=1e-3) if isinstance(expected, float) else expected
            assert row_resumed[key] == expected, key
    assert straight[1]["train_loss"] != pytest.approx(straight[0]["train_loss"], rel=1e-3)  # epochs do differ


def test_a_failing_rank_says_why_in_one_line_and_the_run_resumes(two_rank_runs):
    failed = two_rank_runs["failed"]
    assert failed.returncode != 0
    assert failed.stderr.count("error: rank 1 of 2: the loss became NaN at epoch 2, step 1") == 1, failed.stderr
    assert "[rank0]: Traceback" not in failed.stderr and "[rank1]: Traceback" not in failed.stderr  # lines, no dumps
    assert "Resuming" in two_rank_runs["resumed"].stdout
    history = json.loads((two_rank_runs["out"] / "resumed" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]


def test_resuming_with_another_number_of_processes_is_refused(two_rank_runs, capsys, fixed_speed):
    with pytest.raises(SystemExit) as exit_info:  # python train.py, 1 process, on the 2-process run
        cli.run_cli(train.main, tiny_run(two_rank_runs["data"], two_rank_runs["out"] / "straight", *CHAIN_FLAGS,
                                            "--resume"))
    assert exit_info.value.code == 2
    assert "was trained by 2 process(es), and this is 1" in capsys.readouterr().err


def test_sync_bn_is_refused_on_the_cpu(tmp_path):
    with pytest.raises(cli.UserError, match="--sync-bn needs CUDA GPUs"):
        train.main(["--out", str(tmp_path), "--device", "cpu", "--sync-bn"])


def test_experiments_three_class_under_torchrun(tiny_data, tmp_path):
    # --small-model: the name vgg16-course builds the small airbench net. The subject is how reports.py runs under
    # torchrun (what rank 0 alone writes, what it records), not VGG16 (tests/experiments/test_experiments.py trains
    # it): 20 core-seconds, not 28, and 0.03 GB of checkpoints written, not 0.54
    out = tmp_path / "three-class"
    result = ran(launch(2, ["three-class", "--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1",
                            "--models", "vgg16-course", "--val-per-class", "2", "--device", "cpu",
                            "--precision", "fp32"], "--small-model", main="--experiments"))
    assert result.stdout.count("Wrote ") == 1 and result.stdout.count("Epoch [1/1], Step [1/1]") == 1
    info = json.loads((out / "vgg16-course" / "experiment.json").read_text())
    assert info["command"].startswith("torchrun --nnodes 1 --nproc_per_node 2 train.py ")
    assert info["devices"] == ["cpu (1 threads) x 2 processes"]
    assert (out / "vgg16-course" / "confusion.png").is_file() and "x 2 processes" in (out / "results.md").read_text()


if __name__ == "__main__":  # one process of a test run: the test-only settings, then train.py's or reports.py's main
    split = next(i for i, arg in enumerate(sys.argv) if arg in ("--train", "--experiments"))
    test_flags, argv = sys.argv[1:split], sys.argv[split + 1:]
    # one fixed speed path, whatever speed.choose would pick on this CPU: the runs compared compute alike
    speed.choose = fixed_speed_choice
    if "--small-model" in test_flags:
        models.MODELS["vgg16-course"] = models.MODELS["airbench"]
    if "--frozen" in test_flags:
        utils.augment = lambda images, generator=None: images
        nn.BatchNorm2d.forward = lambda self, x: F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                                              self.bias, False, 0.0, self.eps)
    if "--fail-on-rank-1-at-epoch" in test_flags:
        fail_at = int(test_flags[test_flags.index("--fail-on-rank-1-at-epoch") + 1])
        real_epoch = train.loops.train_one_epoch

        def failing(*args, **kwargs):
            if args[5] == fail_at:  # the epoch number
                torch.distributed.barrier()  # rank 0 has saved the epoch before
                if torch.distributed.get_rank() == 1:  # what train_one_epoch says on a NaN loss
                    raise cli.UserError(f"the loss became NaN at epoch {fail_at}, step 1: lower --lr and try again.")
            return real_epoch(*args, **kwargs)

        train.loops.train_one_epoch = failing
    if sys.argv[split] == "--experiments":
        from experiments import reports  # here only: it imports matplotlib, which the training runs do not need

        cli.run_cli(reports.main, argv)
    else:
        cli.run_cli(train.main, argv)
