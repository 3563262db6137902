"""prepare_data.py: the held-out test/ split is exactly train.py's validation split, written all or nothing."""
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import ROOT

import prepare_data
import utils
from course.cli import run_cli


def test_prepare_data_holds_out_train_py_validation_split(tiny_data, tmp_path):
    prepare_data.main(["--source", str(tiny_data), "--out", str(tmp_path / "split"), "--val-per-class", "3"])
    images, labels = utils.load_data("train", tiny_data, utils.CIFAR10_CLASSES)
    held_out = utils.validation_indices(labels, 3, seed=0)
    test_images, test_labels = utils.load_data("test", tmp_path / "split", utils.CIFAR10_CLASSES)
    train_images, _ = utils.load_data("train", tmp_path / "split", utils.CIFAR10_CLASSES)
    assert len(test_labels) == 30 and len(train_images) == 90
    assert torch.equal(test_images, images[held_out]) and torch.equal(test_labels, labels[held_out])
    with pytest.raises(utils.UserError, match="already exists"):
        prepare_data.main(["--source", str(tiny_data), "--out", str(tmp_path / "split")])


def test_missing_source_says_how_to_extract_it(tmp_path):
    with pytest.raises(utils.UserError, match="train/<class>/ images. First .*tar xzf .* -C data"):
        prepare_data.main(["--source", str(tmp_path / "none"), "--out", str(tmp_path / "split")])
    assert not (tmp_path / "split").exists()


def damaged_png(tiny_data) -> bytes:
    """The first half of a real image of the tiny data set."""
    data = (tiny_data / "train" / "cat" / "0000.png").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("content,reason", [
    ("Légende de l'image\n".encode("latin-1"), "it is not an image"),  # not UTF-8
    (b"", "the file is empty"),
    (b"\0" * 3072, "it is not an image"),
    (None, "it is damaged or truncated"),
], ids=["latin-1-text", "empty", "nul-bytes", "truncated"])
def test_a_bad_image_is_named_and_nothing_is_written(tiny_data, tmp_path, capsys, content, reason):
    source = tmp_path / "source"
    shutil.copytree(tiny_data, source)
    bad = source / "train" / "dog" / "0005.png"
    bad.write_bytes(damaged_png(tiny_data) if content is None else content)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(prepare_data.main, ["--source", str(source), "--out", str(tmp_path / "split"),
                                    "--val-per-class", "3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(f"error: cannot read image {bad}: {reason}")
    assert "Remove or replace the file" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # neither split/ nor split.partial/


def run_closed(*args: str, buffered: bool) -> subprocess.CompletedProcess:
    """python prepare_data.py ARGS writing to a pipe whose reader has already gone (`| head -0`)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, str(ROOT / "prepare_data.py"), *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300,
                              env=env if buffered else {**env, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(write_end)


@pytest.fixture(scope="module")
def closed_runs(tiny_data, tmp_path_factory) -> Iterator[tuple[Path, dict[str, Future]]]:
    """The three runs into a closed stdout below, started together and run side by side: each imports torch
    (seconds of one core). (the split's folder, name -> future of the finished process)"""
    split = tmp_path_factory.mktemp("closed") / "split"
    commands = {"help_buffered": lambda: run_closed("--help", buffered=True),
                "help_unbuffered": lambda: run_closed("--help", buffered=False),
                "report": lambda: run_closed("--source", str(tiny_data), "--out", str(split), "--val-per-class", "3",
                                             buffered=True)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield split, {name: pool.submit(command) for name, command in commands.items()}


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_help_into_a_closed_stdout_is_quiet(closed_runs, buffered):
    result = closed_runs[1]["help_buffered" if buffered else "help_unbuffered"].result()
    assert result.stderr == "" and result.returncode in (0, 1)  # 0: argparse itself ignores the failed write


def test_its_report_into_a_closed_stdout_is_quiet_and_the_split_complete(closed_runs):
    split, started = closed_runs
    result = started["report"].result()
    assert (result.returncode, result.stderr) == (1, "")
    assert len(list((split / "test").rglob("*.png"))) == 30
