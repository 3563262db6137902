"""The students' handout (`grade.py handout`) and the Gradescope autograder (`grade.py autograder`), end to end."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import side_by_side
from submissions import INLINE_NESTED, RIGHT_ANSWERS, run_grade

import grading.handout as build
from grading import ROOT
from grading.compare import ACCEPTED, Reference, compare
from grading.handout import known_answers, leaked_answers
from grading.markers import fill_blanks, make_skeleton

REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
ACCURACY = re.compile(r"^Accuracy of the model on the .* images: .*%$", re.MULTILINE)
MAX_PYTHON_FILES, MAX_PYTHON_LINES = 10, 1_500  # outside tests/: what a student may have to look through
MAX_FILE_LINES = 300  # issue 32: no file a student sees is longer


def main_py(folder: Path, data: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    """`python main.py --epochs 0` of a folder, on the tiny data, with the given checkpoint."""
    return subprocess.run([sys.executable, "main.py", "--epochs", "0", "--data-dir", str(data), "--checkpoint",
                           str(checkpoint), "--device", "cpu"], cwd=folder, check=False, capture_output=True,
                          text=True, timeout=600)


def run_in(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python ARGV...` in a folder."""
    return subprocess.run([sys.executable, *argv], cwd=folder, check=False, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    """A fresh handout folder."""
    folder = tmp_path_factory.mktemp("handouts") / "handout"
    assert run_grade(["handout", "-o", str(folder)]) == 0
    return folder


def files_of(folder: Path) -> set[str]:
    """Every file of a folder, relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_handout_holds_what_students_need_and_nothing_else(handout):
    files = files_of(handout)
    assert files == {"resnet.py", "README.md", ".gitignore", *build.handout_files()}
    assert {"resnet.py", "README.md", "main.py", "check.py", "prepare_data.py", "utils.py", "requirements.txt",
            "pytest.ini", "data/README.md", "tests/test_resnet.py", "tests/conftest.py",
            "checkpoints/resnet50_cifar10.pt", "course/cli.py", "course/assignment.py"} <= files
    assert set(build.handout_modules()) <= files
    assert (handout / "resnet.py").read_text(encoding="utf-8") == make_skeleton(REFERENCE)
    # never the grader, the answers' other forms, the reports' CIFAR-stem ResNet, the trainer, nor vgg.py, which
    # main.py no longer imports (`--model vgg16` says it is not part of this copy), and so not its checkpoint
    assert not {"grade.py", "tests/submissions.py", "tests/grading/test_grade.py", "course/resnet_cifar.py",
                "vgg.py", "checkpoints/vgg16_cifar10.pt", "train.py", "checkpoints/README.md"} & files
    assert not any(f.startswith(("grading/", "experiments/", "docs/", "tools/")) for f in files)
    assert [f for f in files if f.endswith(".pt")] == ["checkpoints/resnet50_cifar10.pt"]
    readme = (handout / "README.md").read_text(encoding="utf-8")
    assert "python check.py resnet.py" in readme and "`fc` (5 points)" in readme
    assert "prepare_data.py" in readme
    assert "vgg" not in readme.lower()


def test_no_right_answer_in_any_form_reaches_the_handout(handout):
    answers = known_answers(Reference.load())
    # what the build looks for: the reference's own answers first, then every form of tests/submissions.py
    assert [texts[0] for texts in answers.values()] == ["".join(b.lines) for b in Reference.load().blanks.values()]
    assert {blank_id: texts[1:] for blank_id, texts in answers.items()} == RIGHT_ANSWERS
    assert INLINE_NESTED in answers["block_downsample"]
    assert leaked_answers(handout, answers) == []


def test_no_handout_file_imports_the_grader_or_the_test_submissions(handout):
    for path in handout.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {name.split(".")[0] for name in names} & {"grading", "grade", "submissions"}, path


def test_the_right_answers_are_right():
    """Every form of RIGHT_ANSWERS is one the grader accepts from its text alone, but INLINE_NESTED (the layers
    written out, no helpers), which it accepts from what it builds (tests/grading/test_grade_cohort.py and
    tests/grading/test_check_agreement.py)."""
    ref = Reference.load()
    assert set(RIGHT_ANSWERS) == set(ref.blanks)
    for blank_id, texts in RIGHT_ANSWERS.items():
        for text in texts:
            verdict = compare(ref, blank_id, text.splitlines(keepends=True))[0]
            assert verdict in ACCEPTED or text == INLINE_NESTED, f"{blank_id}: {text!r} is {verdict}"


def planted(text: str) -> dict[str, str]:
    """An answer as a copy could carry it, by file name: re-indented with comments between its lines, in string
    literals, commented out, and on one line (its comments left out) in a Markdown code span."""
    lines = textwrap.dedent(text).splitlines()
    noisy = "".join(f"        {line}  # a comment\n        # another\n" for line in lines)
    quoted = '"""\\\n' + text.replace("\\", "\\\\") + '"""'
    return {"reindented.py": f"def f():\n    x = [\n{noisy}    ]\n",
            "strings.py": f"ANSWER = {text!r}\nOTHER = {quoted}\n",
            "commented.py": "".join(f"    #  {line}\n" for line in lines),
            "notes.md": "Some prose, then `" + " ".join(line.split("#")[0].strip() for line in lines)
                        + "` in a code span.\n"}


def test_a_planted_answer_is_caught_in_every_form_and_every_file(tmp_path):
    answers = known_answers(Reference.load())
    for blank_id, texts in answers.items():
        for i, text in enumerate(texts):
            folder = tmp_path / f"{blank_id}-{i}"
            folder.mkdir()
            for name, content in planted(text).items():
                (folder / name).write_text(content, encoding="utf-8")
            # a line both blocks share (their 3x3) is named for one of them
            found = {leak.split(":")[0] for leak in leaked_answers(folder, answers)
                     if leak.endswith(blank_id) or blank_id.startswith("block_")}
            assert found == set(planted(text)), f"{blank_id}: {text!r} not caught in {set(planted(text)) - found}"


def test_one_line_of_a_block_is_a_leak_but_a_block_the_layer_tests_build_is_not(tmp_path):
    (tmp_path / "notes.md").write_text("    conv1x1(in_channels, middle_channels, stride=2, padding=0),\n")
    (tmp_path / "test_it.py").write_text("assert count(ResidualBlock(256, 64, 256, downsample=True)) == 137_088\n")
    assert leaked_answers(tmp_path, known_answers(Reference.load())) == ["notes.md:1: block_downsample"]


def test_inline_nested_put_into_a_handout_file_is_caught(handout, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(handout, copy, ignore=shutil.ignore_patterns("*.pt"))
    conftest = copy / "tests" / "conftest.py"
    helper = "\n\ndef block():  # a helper\n    return [\n" + textwrap.indent(textwrap.dedent(INLINE_NESTED), " " * 8)
    conftest.write_text(conftest.read_text(encoding="utf-8") + helper + "    ]\n", encoding="utf-8")
    leaks = leaked_answers(copy, known_answers(Reference.load()))
    assert leaks and all(leak.startswith("tests/conftest.py:") and leak.endswith("block_downsample")
                         for leak in leaks)


def test_the_build_refuses_a_handout_with_a_right_answer(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "DATA", (*build.DATA, "tests/submissions.py"))
    monkeypatch.setattr(build, "ROLES", {**build.ROLES, "tests/submissions.py": "right answers, by mistake"})
    assert run_grade(["handout", "-o", str(tmp_path / "handout")]) == 2
    err = capsys.readouterr().err
    assert "would hold right answers" in err and "tests/submissions.py:" in err
    assert not (tmp_path / "handout").exists() and not list(tmp_path.glob(".handout.partial-*"))


def test_the_readme_says_why_each_python_file_is_there(handout):
    readme = (handout / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^- `([\w/]+\.py)`: \S", readme, re.MULTILINE)
    assert sorted(listed) == sorted(p.relative_to(handout).as_posix() for p in handout.rglob("*.py"))
    assert sorted(listed) == sorted(build.python_files()) == sorted(build.ROLES)  # and no line for a file it lacks
    assert "- `resnet.py`: **the assignment**" in readme
    assert "- `course/assignment.py`: the blanks, sizes and hints `check.py` checks with; how it reads your file" \
        in readme


def test_a_python_file_without_a_line_stops_the_build(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "ROLES", {k: v for k, v in build.ROLES.items() if k != "course/speed.py"})
    assert run_grade(["handout", "-o", str(tmp_path / "handout")]) == 2
    assert "course/speed.py without a line in the students' README" in capsys.readouterr().err
    assert not (tmp_path / "handout").exists()


def python_lines(handout: Path) -> dict[str, int]:
    """Lines of each Python file of the handout outside tests/."""
    return {name: len((handout / name).read_text(encoding="utf-8").splitlines())
            for name in files_of(handout) if name.endswith(".py") and not name.startswith("tests/")}


def test_the_handout_has_few_files_none_of_them_long(handout):
    """At most MAX_PYTHON_FILES Python files outside tests/, none over MAX_FILE_LINES lines."""
    lines = python_lines(handout)
    assert len(lines) <= MAX_PYTHON_FILES, f"{len(lines)} Python files: {sorted(lines)}"
    assert max(lines.values()) <= MAX_FILE_LINES, lines


@pytest.mark.xfail(strict=True, reason="issue 32 item 3, blocked on its author's decision: the handout's 10 files "
                   "hold 1,963 lines, each <= 300; the limit of 1,500 would cost features other "
                   "issues asked for")
def test_the_handout_stays_small(handout):
    """MAX_PYTHON_LINES lines in all outside tests/."""
    lines = python_lines(handout)
    assert sum(lines.values()) <= MAX_PYTHON_LINES, f"{sum(lines.values())} lines: {lines}"


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


def test_the_readme_lists_only_the_resnet_checkpoint_with_its_size(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert build.checkpoint_lines(tmp_path) == ""
    for name, size in [("resnet50_cifar10.pt", 29_710_933), ("vgg16_cifar10.pt", 29_470_000)]:
        with open(tmp_path / "checkpoints" / name, "wb") as f:
            f.truncate(size)  # sparse: the size is all that counts here
    assert build.checkpoint_lines(tmp_path).splitlines() == [
        "- `checkpoints/resnet50_cifar10.pt` (29.7 MB): the pretrained ResNet-50 (fp16 weights) that `python main.py` "
        "loads into your `resnet.py`"]


def test_handout_never_overwrites(handout, capsys):
    assert run_grade(["handout", "-o", str(handout)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not list(handout.parent.glob(".handout.partial-*"))


def test_bare_handout_fails_the_self_check_and_main(handout, tiny_data, tiny_checkpoint):
    check, main = side_by_side(lambda: run_in(handout, "check.py", "resnet.py"),
                               lambda: main_py(handout, tiny_data, tiny_checkpoint))
    assert check.returncode == 1, check.stderr
    for blank_id in Reference.load().blanks:  # every blank: not done yet
        assert re.search(rf"^ *{blank_id} +not done yet", check.stdout, re.MULTILINE), check.stdout
    assert main.returncode != 0  # main.py runs the student's model


def test_the_scripts_run_in_the_handout(handout):
    helped, vgg = side_by_side(lambda: run_in(handout, "main.py", "--help"),
                               lambda: run_in(handout, "main.py", "--model", "vgg16", "--no-pretrained",
                                              "--epochs", "0", "--device", "cpu"))
    assert helped.returncode == 0 and "--checkpoint" in helped.stdout
    assert "one of those this copy has: resnet50 (default" in " ".join(helped.stdout.split())
    assert vgg.returncode == 2 and "vgg16 (vgg.py) is not part of this copy of the project" in vgg.stderr
    assert "use --model resnet50." in vgg.stderr


def test_vgg16_without_its_checkpoint_says_it_is_not_in_the_handout(handout):
    vgg = run_in(handout, "main.py", "--model", "vgg16", "--epochs", "0", "--device", "cpu")
    assert vgg.returncode == 2 and "vgg16 (vgg.py) is not part of this copy of the project" in vgg.stderr
    assert "use --model resnet50." in vgg.stderr


def test_the_layer_tests_fail_the_skeleton_and_pass_the_reference(handout):
    pytest_run = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_resnet.py")
    skeleton, reference = side_by_side(lambda: run_in(handout, *pytest_run),
                                       lambda: run_in(handout, *pytest_run, "--impl", str(ROOT / "resnet.py")))
    assert skeleton.returncode == 1 and " failed" in skeleton.stdout
    assert reference.returncode == 0, reference.stdout[-2000:]


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
        assert {"setup.sh", "run_autograder", "requirements.txt", "grade.py", "course/cli.py",
                "course/assignment.py", "resnet.py", "tests/test_resnet.py", "grading/runner.py"} <= set(names)
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
