"""main.py end to end on a generated data set, and every kind of bad input it must refuse clearly."""
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from conftest import ROOT

import main
import utils
from course import models
from course.cli import run_cli

STEP_LINE = re.compile(r"^Epoch \[1/1\], Step \[(\d+)/(\d+)\] Loss: \d+\.\d{4}$")
ACCURACY_LINE = re.compile(r"^Accuracy of the model on the test images: \d{1,3}\.\d{2} %$")


def run_main(*args) -> subprocess.CompletedProcess:
    """python main.py ARGS in a fresh process, as a student would run it (from the project folder)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)


def closed_stdout_run(*args, buffered: bool = True) -> subprocess.CompletedProcess:
    """python main.py ARGS writing to a pipe whose reader has already gone, as `python main.py | head -0` would."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300, cwd=ROOT,
                              env=env if buffered else {**env, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(write_end)


class Runs(NamedTuple):
    folder: Path  # where they write
    before: bytes  # the pretrained file's bytes before any of them ran
    started: dict[str, Future]  # name -> the finished process, once it is


@pytest.fixture(scope="module")
def runs(tiny_data, tiny_checkpoint, tmp_path_factory) -> Iterator[Runs]:
    """This module's `python main.py` processes, all started with the first test that needs one and run two at a
    time while the tests go on: each spends seconds of one core importing torch, so on 2 cores they overlap."""
    folder = tmp_path_factory.mktemp("main_runs")
    (folder / "empty").mkdir()
    before = tiny_checkpoint.read_bytes()
    commands = {
        "end_to_end": lambda: run_main("--data-dir", tiny_data, "--checkpoint", tiny_checkpoint,
                                       "--out", folder / "finetuned.pt", "--batch-size", 12, "--device", "cpu"),
        # batch size 1 on 120 images gives 120 steps: a step line at 100 and one at the end (the small airbench
        # net: with 120 steps of the ResNet-50 the end-to-end test took 31-35 s on a 2-core Zen 3)
        "step_lines": lambda: run_main("--data-dir", tiny_data, "--model", "airbench", "--no-pretrained",
                                       "--out", folder / "airbench.pt", "--batch-size", 1, "--device", "cpu"),
        "evaluate_only": lambda: run_main("--data-dir", tiny_data, "--no-pretrained", "--epochs", 0,
                                          "--classes", "cat,dog", "--out", folder / "never.pt"),
        "bad_input": lambda: run_main("--data-dir", folder / "empty", "--no-pretrained"),
        "closed_stdout": lambda: closed_stdout_run("--data-dir", tiny_data, "--model", "airbench", "--no-pretrained",
                                                   "--batch-size", 60, "--precision", "fp32",
                                                   "--out", folder / "closed.pt", "--device", "cpu"),
        "help_buffered": lambda: closed_stdout_run("--help"),
        "help_unbuffered": lambda: closed_stdout_run("--help", buffered=False),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield Runs(folder, before, {name: pool.submit(command) for name, command in commands.items()})


def test_main_end_to_end(runs, tiny_checkpoint):
    out = runs.folder / "finetuned.pt"
    result = runs.started["end_to_end"].result()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [m.groups() for m in map(STEP_LINE.match, lines) if m] == [("10", "10")]  # the last step's line
    assert sum(bool(ACCURACY_LINE.match(line)) for line in lines) == 1
    assert "Device: cpu" in result.stdout and re.search(r"Done in (\d+ min )?\d+ s on cpu", result.stdout)
    assert f"Saved the fine-tuned weights to {out}" in result.stdout  # "trained" when from random weights
    assert "Traceback" not in result.stderr
    # output from the first second: a line per phase, then progress lines that are visibly not course lines
    assert [line.split(":")[0] for line in lines[:5]] == ["Model", "Device", "Data", "Speed (training)", "  .. epoch 1"]
    progress = [line for line in lines if line.startswith("  .. epoch 1: ")]
    assert len(progress) >= 10 and all(re.search(r"\d+ img/s, .* left$", line) for line in progress)
    # the fine-tuned weights are written, and the pretrained file is untouched
    saved = models.load_checkpoint(out)
    assert saved["arch"] == "resnet50" and saved["epoch"] == 2 and saved["recipe"]["optimizer"] == "sgd"
    assert saved["recipe"]["schedule"] == "cosine"  # the default: the lr falls to 0 by the end
    model = models.build_model("resnet50", 10)
    models.load_weights(model, saved, "resnet50", utils.CIFAR10_CLASSES, out)
    assert tiny_checkpoint.read_bytes() == runs.before


def test_a_step_line_every_100_steps_and_one_at_the_end(runs):
    result = runs.started["step_lines"].result()
    assert result.returncode == 0, result.stderr
    assert [m.groups() for m in map(STEP_LINE.match, result.stdout.splitlines()) if m] == [("100", "120"),
                                                                                           ("120", "120")]


def test_evaluate_only_with_class_subset_from_scratch(runs):
    result = runs.started["evaluate_only"].result()
    assert result.returncode == 0, result.stderr
    assert "from random weights" in result.stdout
    assert any(ACCURACY_LINE.match(line) for line in result.stdout.splitlines())
    assert not (runs.folder / "never.pt").exists()  # nothing trained, nothing saved


def test_bad_input_in_a_subprocess_has_no_traceback(runs):
    result = runs.started["bad_input"].result()  # --data-dir: an empty folder
    assert result.returncode == 2
    assert result.stderr.startswith("error: no CIFAR-10 'train' split found")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def fails_with(capsys, argv, pattern):
    """Run main.py's entry point in this process; it must exit 2 with one clear error line."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main.main, [str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert re.search(pattern, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("flags,pattern", [
    (["--epochs", "-1"], "--epochs: must be a whole number, 0 or more"),
    (["--batch-size", "0"], "--batch-size: must be a positive whole number"),
    (["--lr", "0"], "--lr: must be a positive number"),
    (["--batch-size", "ten"], "--batch-size: expected a positive whole number"),
    (["--model", "resnet18"], "invalid choice"),
])
def test_bad_numbers_and_choices(capsys, flags, pattern):
    fails_with(capsys, flags, pattern)


def test_unknown_classes(capsys, tiny_data):
    fails_with(capsys, ["--data-dir", tiny_data, "--no-pretrained", "--classes", "cats"], "unknown class name.*cats")


def test_missing_checkpoint(capsys, tiny_data, tmp_path):
    fails_with(capsys, ["--data-dir", tiny_data, "--checkpoint", tmp_path / "none.pt"],
               "no pretrained checkpoint.*train.py.*--no-pretrained")


def write_and_check_untouched(capsys, tiny_data, tmp_path, content: bytes, pattern: str):
    """A bad checkpoint is refused, and neither it nor an existing --out file changes."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    out = tmp_path / "out.pt"
    out.write_bytes(b"precious")
    fails_with(capsys, ["--data-dir", tiny_data, "--checkpoint", bad, "--out", out], pattern)
    assert bad.read_bytes() == content and out.read_bytes() == b"precious"


def test_truncated_checkpoint(capsys, tiny_data, tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    write_and_check_untouched(capsys, tiny_data, tmp_path, data[: len(data) // 2], "truncated or not a PyTorch file")


@pytest.mark.parametrize("content,pattern", [
    (os.urandom(4096), "truncated or not a PyTorch file"),
    ("Poids du modèle entraîné\n".encode("latin-1"), "truncated or not a PyTorch file"),  # not UTF-8
    (b"", "the file is empty"),
    (b"\0" * 4096, "truncated or not a PyTorch file"),
], ids=["random-bytes", "latin-1-text", "empty", "nul-bytes"])
def test_a_file_that_is_no_checkpoint(capsys, tiny_data, tmp_path, content, pattern):
    write_and_check_untouched(capsys, tiny_data, tmp_path, content, pattern)


def test_a_zip_that_is_no_pytorch_file(capsys, tiny_data, tmp_path):
    import zipfile

    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not weights")
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(), "truncated or not a PyTorch file")


@pytest.mark.parametrize("content", [torch.ones(3), {"format": 1, "arch": "resnet50", "model": [1, 2]}],
                         ids=["a-tensor", "model-not-weights"])
def test_a_pytorch_file_that_is_no_checkpoint_of_this_project(capsys, tiny_data, tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(), "not a checkpoint of this project")


def test_a_bare_state_dict_is_named_as_such(capsys, tiny_data, tmp_path):
    path = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(), "a bare model.state_dict")


class RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(capsys, tiny_data, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "arch": "resnet50", "model": RunsCode(marker)}, path)
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(), "refusing to load")
    assert not marker.exists()


def test_checkpoint_of_another_architecture(capsys, tiny_data, tmp_path):
    path = tmp_path / "vgg.pt"
    models.save_checkpoint(path, torch.nn.Linear(2, 2), {"arch": "vgg16", "classes": list(utils.CIFAR10_CLASSES)})
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(), "holds a 'vgg16' model, not 'resnet50'")


def test_checkpoint_of_another_class_count(capsys, tiny_data, tiny_checkpoint, tmp_path):
    fails_with(capsys, ["--data-dir", tiny_data, "--checkpoint", tiny_checkpoint, "--classes", "cat,dog"],
               "trained on 10 classes")


def test_checkpoint_with_wrong_weights(capsys, tiny_data, tmp_path):
    path = tmp_path / "wrong.pt"
    models.save_checkpoint(path, torch.nn.Linear(2, 2), {"arch": "resnet50", "classes": list(utils.CIFAR10_CLASSES)})
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(),
                              r"do not fit this resnet50: \d+ missing from the checkpoint: layer1\.0\.weight, .* and "
                              r"\d+ more; 2 in the checkpoint but not in the model: weight, bias\. The first name")


def test_weights_that_do_not_fit_name_the_layer_and_both_shapes(capsys, tiny_data, tmp_path):
    from resnet import ResNet50

    model = ResNet50(10)
    model.fc = torch.nn.Linear(2048, 10)  # a student's fc with the wrong number of inputs
    path = tmp_path / "wide_fc.pt"
    models.save_checkpoint(path, model, {"arch": "resnet50", "classes": list(utils.CIFAR10_CLASSES)})
    write_and_check_untouched(capsys, tiny_data, tmp_path, path.read_bytes(),
                              r"do not fit this resnet50: 1 of another shape: fc\.weight \(the model: 10 x 1024, "
                              r"the checkpoint: 10 x 2048\)\. The first name is the layer to fix in resnet\.py")
    assert "Error(s) in loading state_dict" not in capsys.readouterr().err


def test_out_may_not_be_a_folder(capsys, tiny_data, tiny_checkpoint, tmp_path):
    fails_with(capsys, ["--data-dir", tiny_data, "--checkpoint", tiny_checkpoint, "--out", tmp_path],
               "is a folder; give a file name")


def test_out_may_not_be_the_pretrained_file(capsys, tiny_data, tiny_checkpoint):
    before = tiny_checkpoint.read_bytes()
    fails_with(capsys, ["--data-dir", tiny_data, "--checkpoint", tiny_checkpoint, "--out", tiny_checkpoint],
               "never overwritten")
    assert tiny_checkpoint.read_bytes() == before


def test_each_fine_tune_writes_a_new_file_and_says_where(tiny_data, tmp_path, capsys, monkeypatch, fixed_speed):
    monkeypatch.chdir(tmp_path)  # the file's name is the subject: the small airbench net (4.7 s the test, not 14.6)
    argv = ["--data-dir", tiny_data, "--model", "airbench", "--no-pretrained", "--batch-size", "60", "--device", "cpu"]
    stamps = iter(["20261124-080000", "20261124-080001"])
    monkeypatch.setattr(main, "timestamp", lambda: next(stamps))
    run_cli(main.main, [str(a) for a in argv])
    run_cli(main.main, [str(a) for a in argv])
    saved = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert saved == ["airbench_finetuned_20261124-080000.pt", "airbench_finetuned_20261124-080001.pt"]
    assert "Saved the trained weights to runs/airbench_finetuned_20261124-080001.pt" in capsys.readouterr().out


def test_a_prepared_copy_under_data_is_found_without_data_dir(tiny_data, tmp_path, capsys, monkeypatch):
    import shutil

    shutil.copytree(tiny_data, tmp_path / "cifar10-split")
    monkeypatch.setattr(utils, "DEFAULT_DATA_ROOT", tmp_path)
    run_cli(main.main, ["--no-pretrained", "--epochs", "0", "--device", "cpu"])
    out = capsys.readouterr().out
    assert f"Data: {tmp_path / 'cifar10-split'} (found by itself; --data-dir chooses another): 120 training" in out


def test_offline_download_error_names_the_archive_and_prepare_data(tmp_path, capsys, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "cifar10-train-jpg.tar.gz").write_bytes(b"")
    monkeypatch.setattr(utils, "DEFAULT_DATA_ROOT", tmp_path / "project" / "data")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    fails_with(capsys, ["--no-pretrained", "--epochs", "0"],
               r"could not download CIFAR-10.*run `tar xzf \.\./shared/data/cifar10-train-jpg\.tar\.gz -C data && "
               r"python prepare_data\.py`")


def test_paths_inside_the_current_folder_print_relative(tiny_data, tiny_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tiny_checkpoint.parent.parent)
    run_cli(main.main, ["--data-dir", str(tiny_data), "--checkpoint", str(tiny_checkpoint), "--epochs", "0"])
    out = capsys.readouterr().out
    assert f"Model: pretrained resnet50 from {tiny_checkpoint.parent.name}/resnet50_tiny.pt (1 epochs" in out
    assert f"Data: {tiny_data.name} (--data-dir)" in out


def test_a_run_whose_stdout_closes_early_still_trains_and_saves(runs):  # `python main.py | head -1`
    result = runs.started["closed_stdout"].result()
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"Saved the trained weights to {runs.folder / 'closed.pt'}"
    assert models.load_checkpoint(runs.folder / "closed.pt")["epoch"] == 1


def test_an_out_that_cannot_be_written_is_refused_before_training(capsys, tiny_data, tiny_checkpoint, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    unwritable = tmp_path / "a_file" / "w.pt"  # under a file: refused even for root, who ignores permissions
    fails_with(capsys, ["--data-dir", tiny_data, "--checkpoint", tiny_checkpoint, "--out", unwritable],
               r"--out .*a_file/w\.pt: cannot write there \(.*\); choose another --out")
    assert "Epoch [" not in capsys.readouterr().out  # refused before the first step


def test_weights_that_cannot_be_saved_after_training_are_kept_elsewhere(capsys, tiny_data, tiny_checkpoint, tmp_path,
                                                                       monkeypatch, fixed_speed):
    real_save, out = models.save_checkpoint, tmp_path / "out.pt"

    def disk_full_at_out(path, *args, **kwargs):
        if Path(path) == out:
            raise OSError(28, "No space left on device")
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(models, "save_checkpoint", disk_full_at_out)
    monkeypatch.setattr(main.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    with pytest.raises(SystemExit) as stop:
        run_cli(main.main, ["--data-dir", str(tiny_data), "--checkpoint", str(tiny_checkpoint), "--batch-size", "60",
                            "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    rescued = list((tmp_path / "tmp").glob("rescued-*-out.pt"))
    assert stop.value.code == 1 and len(rescued) == 1 and not out.exists()
    assert f"could not save the weights to {out} (No space left on device); they are in {rescued[0]}" in err
    assert models.load_checkpoint(rescued[0])["epoch"] == 2  # the checkpoint's 1 epoch and this one


def test_a_checkpoint_with_nan_weights_is_refused(capsys, tiny_data, tiny_checkpoint, tmp_path):
    checkpoint = models.load_checkpoint(tiny_checkpoint)
    checkpoint["model"]["layer2.0.layer.0.0.weight"][0, 0] = float("nan")
    checkpoint["model"]["fc.bias"][3] = float("inf")
    damaged = tmp_path / "damaged.pt"
    torch.save(checkpoint, damaged)
    write_and_check_untouched(capsys, tiny_data, tmp_path, damaged.read_bytes(),
                              r"is damaged: its weights hold values that are not numbers \(NaN or infinity\), in "
                              r"layer2\.0\.layer\.0\.0\.weight and 1 more\. Download or copy it again")


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_help_into_a_closed_stdout_is_quiet(runs, buffered):
    result = runs.started["help_buffered" if buffered else "help_unbuffered"].result()
    assert result.stderr == "" and result.returncode in (0, 1)  # 0: argparse itself ignores the failed write


def test_header_explains_the_fp16_copy_of_the_checkpoint(tiny_data, tiny_checkpoint, capsys):
    run_cli(main.main, ["--data-dir", str(tiny_data), "--checkpoint", str(tiny_checkpoint), "--epochs", "0"])
    out = capsys.readouterr().out
    assert "10.00 % on its validation before the export to fp16, which may move it by up to 0.1 point" in out
