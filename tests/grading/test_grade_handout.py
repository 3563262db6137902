"""The students' handout (`grade.py handout`) and the Gradescope autograder (`grade.py autograder`), end to end."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import side_by_side
from submissions import run_grade

from grading.compare import Reference
from grading.handout import checkpoint_lines, handout_modules, leaked_answers
from grading.markers import fill_blanks, make_skeleton

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
ACCURACY = re.compile(r"^Accuracy of the model on the .* images: .*%$", re.MULTILINE)


def main_py(folder: Path, data: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    """`python main.py --epochs 0` of a folder, on the tiny data, with the given checkpoint."""
    return subprocess.run([sys.executable, "main.py", "--epochs", "0", "--data-dir", str(data), "--checkpoint",
                           str(checkpoint), "--device", "cpu"], cwd=folder, check=False, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    """A fresh handout folder."""
    folder = tmp_path_factory.mktemp("handouts") / "handout"
    assert run_grade(["handout", "-o", str(folder)]) == 0
    return folder


def test_handout_holds_what_students_need_and_no_answers(handout):
    files = {p.relative_to(handout).as_posix() for p in handout.rglob("*") if p.is_file()}
    assert {"resnet.py", "README.md", "main.py", "requirements.txt", "pytest.ini", "tests/test_resnet.py",
            "tests/conftest.py", "checkpoints/resnet50_cifar10.pt", "utils.py", "train.py", "vgg.py",
            "common.py", "prepare_data.py"} <= files
    assert set(handout_modules()) <= files
    assert (handout / "resnet.py").read_text(encoding="utf-8") == make_skeleton(REFERENCE)
    assert not {"grade.py", "tests/test_grade.py", "resnet_cifar.py"} & files
    assert not any(f.startswith("grading/") for f in files)
    assert leaked_answers(handout, Reference.load()) == []
    readme = (handout / "README.md").read_text(encoding="utf-8")
    assert "python check.py resnet.py" in readme and "`fc` (5 points)" in readme
    assert "prepare_data.py" in readme


def test_handout_readme_answers_a_students_first_questions(handout):
    readme = (handout / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"\{\w+\}", readme)  # every field of grading/handout_README.md filled in
    # the install: Python's version, the size of the default download, the smaller CPU-only one
    assert "Python 3.11" in readme and "5.5 GB" in readme
    assert "pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu" in readme
    # the data, online and offline; made without --data-archive, it sends students to the TA
    assert "downloads CIFAR-10 with torchvision" in readme and "ask your TA" in readme
    assert "tar xzf ARCHIVE -C data" in readme and "tar xzf cifar10-train-jpg" not in readme
    # how long, and what success looks like: the numbers README.md measured
    project = (ROOT / "README.md").read_text(encoding="utf-8")
    took = re.search(r"^Done in (.+) on cpu\.$", project, re.MULTILINE).group(1)
    accuracy = re.search(r"^Accuracy of the model on the test images: .* %$", project, re.MULTILINE).group(0)
    assert f"`python main.py` took {took} in all on the 2-core" in readme and "On a GPU: not measured" in readme
    assert f"    {accuracy}\n" in readme
    assert "not your grade" in readme
    size = (ROOT / "checkpoints" / "resnet50_cifar10.pt").stat().st_size / 1e6
    assert f"- `checkpoints/resnet50_cifar10.pt` ({size:.1f} MB): the pretrained ResNet-50" in readme


def referenced_files(markdown: str) -> set[str]:
    """The files a Markdown text names: link targets, and `name.ext` in backticks."""
    links = set(re.findall(r"\]\(([^)#]+)\)", markdown))
    named = set(re.findall(r"`([\w./-]*\.(?:py|md|txt|ini|pt|toml|json|gitignore))`", markdown))
    return {name for name in links | named if "://" not in name}


def test_nothing_in_the_handout_refers_to_a_file_it_lacks(handout):
    assert (handout / ".gitignore").is_file()  # data/README.md says CIFAR-10 stays out of git by it
    for page in handout.rglob("*.md"):
        for name in referenced_files(page.read_text(encoding="utf-8")):
            assert (page.parent / name).exists() or (handout / name).exists(), f"{page.name} names {name}"
    assert "docs/" not in (handout / "README.md").read_text(encoding="utf-8")


def test_the_file_check_above_finds_a_missing_file():
    assert referenced_files("see [training](../docs/training.md) and `tests/test_checkpoint.py`, `data/`") == {
        "../docs/training.md", "tests/test_checkpoint.py"}


def test_data_archive_goes_into_the_readme_commands(tmp_path):
    folder = tmp_path / "handout"
    archive = "/srv/course files/cifar10-train-jpg.tar.gz"  # a space: the command quotes it
    assert run_grade(["handout", "-o", str(folder), "--data-archive", archive]) == 0
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "    tar xzf '/srv/course files/cifar10-train-jpg.tar.gz' -C data\n    python prepare_data.py" in readme
    assert "ask your TA" not in readme


def test_an_empty_data_archive_is_refused(tmp_path, capsys):
    assert run_grade(["handout", "-o", str(tmp_path / "handout"), "--data-archive", " "]) == 2
    assert "--data-archive must be a path" in capsys.readouterr().err and not (tmp_path / "handout").exists()


def test_the_readme_lists_the_vgg_checkpoint_with_its_size_once_it_exists(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / "checkpoints" / "resnet50_cifar10.pt", "wb") as f:
        f.truncate(29_710_933)  # sparse: the size is all that counts here
    assert "vgg16" not in checkpoint_lines(tmp_path)
    with open(tmp_path / "checkpoints" / "vgg16_cifar10.pt", "wb") as f:
        f.truncate(29_470_000)
    assert checkpoint_lines(tmp_path).splitlines() == [
        "- `checkpoints/resnet50_cifar10.pt` (29.7 MB): the pretrained ResNet-50 (fp16 weights) that `python main.py` "
        "loads into your `resnet.py`",
        "- `checkpoints/vgg16_cifar10.pt` (29.5 MB): a pretrained VGG16-BN (fp16 weights; `vgg.py`), as in the "
        "course: `python main.py --model vgg16`"]


def test_handout_never_overwrites(handout, capsys):
    assert run_grade(["handout", "-o", str(handout)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not list(handout.parent.glob(".handout.partial-*"))


def test_a_planted_answer_is_caught(tmp_path):
    (tmp_path / "notes.md").write_text("    conv1x1(in_channels, middle_channels, stride=2, padding=0),\n")
    assert leaked_answers(tmp_path, Reference.load()) == [
        "notes.md: conv1x1(in_channels, middle_channels, stride=2, padding=0),"]


def test_bare_handout_fails_the_self_check_and_main(handout, tiny_data, tiny_checkpoint):
    if (handout / "check.py").is_file():
        done = subprocess.run([sys.executable, "check.py", "resnet.py"], cwd=handout, check=False,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode != 0 and "not done yet" in done.stdout
    assert main_py(handout, tiny_data, tiny_checkpoint).returncode != 0  # main.py runs the student's model


def test_handout_with_the_answers_gives_the_checkpoints_accuracy(handout, tiny_data, tiny_checkpoint, tmp_path):
    filled = tmp_path / "filled"
    shutil.copytree(handout, filled, ignore=shutil.ignore_patterns("*.pt"))
    answers = {b.id: b.lines for b in Reference.load().blanks.values()}
    (filled / "resnet.py").write_text(fill_blanks(make_skeleton(REFERENCE), answers), encoding="utf-8")
    mine, reference = side_by_side(lambda: main_py(filled, tiny_data, tiny_checkpoint),
                                   lambda: main_py(ROOT, tiny_data, tiny_checkpoint))
    assert mine.returncode == 0, mine.stderr
    assert ACCURACY.findall(mine.stdout) == ACCURACY.findall(reference.stdout) != []


def test_autograder_zip_runs_in_a_simulated_autograder_tree(tmp_path):
    archive = tmp_path / "autograder.zip"
    assert run_grade(["autograder", "-o", str(archive)]) == 0
    tree = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert {"setup.sh", "run_autograder", "requirements.txt", "grade.py", "common.py", "resnet.py",
                "tests/test_resnet.py", "grading/runner.py"} <= set(names)
        assert (z.getinfo("run_autograder").external_attr >> 16) & 0o111
        assert "torch==" in z.read("requirements.txt").decode()
        z.extractall(tree / "source")
    (tree / "source" / "run_autograder").chmod(0o755)
    (tree / "submission" / "repo").mkdir(parents=True)
    wrong_fc = REFERENCE.replace("nn.Linear(1024, num_classes)", "nn.Linear(1024, 10)")
    (tree / "submission" / "repo" / "resnet.py").write_text(wrong_fc, encoding="utf-8")
    env = {**os.environ, "AUTOGRADER_ROOT": str(tree), "PYTHON": sys.executable}
    done = subprocess.run([str(tree / "source" / "run_autograder")], env=env, check=False, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((tree / "results" / "results.json").read_text())
    assert results["score"] == 85
    visible = [t for t in results["tests"] if t["visibility"] == "visible"]
    assert [t["name"] for t in visible] == list(Reference.load().blanks)
    fc = next(t for t in visible if t["name"] == "fc")
    assert fc["score"] == 0 and fc["output"] == "not yet right. Hint: " + Reference.load().blanks["fc"].hint
    details = next(t for t in results["tests"] if t["name"] == "fc: details")
    assert details["visibility"] == "after_published" and "ResNet50(7).fc" in details["output"]
    assert not any("reference" in t["output"] for t in visible)  # nothing visible quotes the reference


def test_autograder_without_a_resnet_py(tmp_path):
    (tmp_path / "submission").mkdir()
    assert run_grade(["gradescope", "--root", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 0 and "No resnet.py" in results["output"]
