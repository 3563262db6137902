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
from conftest import run_grade

from grading.compare import Reference
from grading.handout import handout_modules, leaked_answers
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
    mine, reference = main_py(filled, tiny_data, tiny_checkpoint), main_py(ROOT, tiny_data, tiny_checkpoint)
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
