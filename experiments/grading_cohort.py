"""A 40-file cohort with one submission of every kind issue 33 names, for timing `grade.py check` as a TA runs it.

    python -m experiments.grading_cohort /tmp/cohort40
    /usr/bin/time -v python grade.py check /tmp/cohort40 --jobs 2 --csv /tmp/cohort40.csv

The kinds: a notebook, a text copy, a folder three levels deep, a syntax error inside one blank, an unused import of a
package the grading machine lacks, a training script at module level, float64 as the default dtype, a thread that
fills the memory, an exception that quotes what the sandbox can read of the host, a sleeper that ignores SIGTERM,
two attempts of one student (Canvas's names), two files alike up to names and comments, a name a spreadsheet
would read as a formula; the rest are right answers, classic mistakes and unusual right forms.
"""
import argparse
import json
from pathlib import Path

from course import cli

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "resnet.py").read_text(encoding="utf-8")
IMPORTS = "import torch.nn as nn\n"


def edited(*replacements: tuple[str, str]) -> str:
    """The reference with each (old, new) replaced once; old must be there."""
    text = REFERENCE
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def at_import(code: str) -> str:
    """The reference with `code` run at import, right after its imports."""
    return edited((IMPORTS, IMPORTS + code))


def notebook(text: str) -> str:
    """The file as a Jupyter notebook: one code cell per class or function, a markdown cell first."""
    parts = text.split("\n\n\n")
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# My ResNet-50"]}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
               "source": part.splitlines(keepends=True)} for part in parts]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


WRONG_FC = ("nn.Linear(1024, num_classes)", "nn.Linear(1024, 10)")
WRONG_POOL = ("nn.MaxPool2d(kernel_size=3, stride=2, padding=1)", "nn.MaxPool2d(kernel_size=2, stride=2)")


def files() -> dict[str, str]:
    """Relative path -> text of each file of the cohort."""
    alike = edited(WRONG_FC, WRONG_POOL)
    kinds = {
        "nora.ipynb": notebook(REFERENCE),
        "tom.py.txt": REFERENCE,
        "deep/src/model/resnet.py": REFERENCE,
        "syntax_in_one_blank.py": edited(("nn.Linear(1024, num_classes)", "nn.Linear(1024, num_classes")),
        "missing_package.py": at_import("from torchsummary import summary\n"),
        "training_script.py": at_import("import torchvision\n_train = torchvision.datasets.CIFAR10('data', "
                                        "download=True)\n"),
        "float64_default.py": at_import("import torch\ntorch.set_default_dtype(torch.float64)\n"),
        "memory_thread.py": at_import("import threading\ndef _hog():\n    _blocks = []\n    while True:\n"
                                      "        _blocks.append(bytearray(2**26))\n"
                                      "threading.Thread(target=_hog, daemon=True).start()\n"),
        "reads_the_host.py": at_import("raise RuntimeError(open('/proc/self/cmdline').read().replace('\\0', ' '))\n"),
        "sleeper.py": at_import("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                "time.sleep(10**6)\n"),
        "bob_1001_2001_resnet.py": edited(WRONG_FC),  # Canvas: first attempt
        "bob_1001_2002_resnet-1.py": REFERENCE,  # Canvas: the resubmission, graded
        "copy_a.py": alike,
        "copy_b.py": alike.replace("# num_classes", "# classes").replace("in_channels, middle_channels",
                                                                        "in_channels,  middle_channels"),
        "=1+1.py": REFERENCE,
    }
    kinds |= {f"wrong_fc_{i}.py": edited(WRONG_FC) + f"# {i}\n" for i in range(5)}
    kinds |= {f"wrong_pool_{i}.py": edited(WRONG_POOL) + f"# {i}\n" for i in range(5)}
    kinds |= {f"right_{i}.py": REFERENCE + f"# {i}\n" for i in range(40 - len(kinds))}
    return kinds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the 40-file cohort of issue 33's kinds into a new folder.")
    parser.add_argument("folder", type=Path, help="the folder to create (it must not exist)")
    folder = parser.parse_args(argv).folder
    if folder.exists():
        raise cli.UserError(f"{folder} exists already: give a new folder")
    for name, text in files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files())} files into {folder}")


if __name__ == "__main__":
    cli.run_cli(main)
