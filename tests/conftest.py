"""Shared fixtures. `--impl FILE` runs the per-layer tests against another resnet.py (a student's)."""
import contextlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread a worker and for what it starts (read before torch loads)
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_addoption(parser):
    parser.addoption("--impl", default=str(ROOT / "resnet.py"),
                     help="resnet.py implementation to test (default: the reference in the project root)")


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory):
    """The user's cache (decoded images: utils.image_cache; the grader's mark of a reference that builds) is a folder
    of this test run, for the processes it starts too: never ~/.cache, and never what an earlier run left there."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))


def load_module(path, name: str = "impl_under_test"):
    """Import a Python file as a module, whatever its name or folder."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def impl(request):
    """The resnet.py module under test (the reference unless --impl says otherwise)."""
    path = Path(request.config.getoption("--impl")).resolve()
    if not path.is_file():
        pytest.exit(f"--impl {path}: no such file", returncode=4)
    return load_module(path)


def make_image_folder(root: Path, per_class: dict[str, int], classes=None, seed: int = 0) -> Path:
    """A tiny CIFAR-10 copy as DIR/train/<class>/*.png and DIR/test/<class>/*.png (random 32x32 images)."""
    import numpy as np
    from PIL import Image

    from utils import CIFAR10_CLASSES

    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for _label, name in enumerate(classes or CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                # a class-dependent mean colour, so that a model can learn something
                pixels = rng.integers(0, 60, (32, 32, 3)) + CIFAR10_CLASSES.index(name) * 19
                Image.fromarray(pixels.astype("uint8")).save(folder / f"{i:04d}.png")
    return root


def make_torchvision_copy(root: Path, train_per_batch: int = 4, test_count: int = 6, seed: int = 0) -> Path:
    """A tiny CIFAR-10 copy in torchvision's pickle format: DIR/cifar-10-batches-py/."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, count in [(f"data_batch_{i}", train_per_batch) for i in range(1, 6)] + [("test_batch", test_count)]:
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": [int(x) for x in rng.integers(0, 10, count)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Image-folder CIFAR-10 with 12 training and 2 test images per class."""
    return make_image_folder(tmp_path_factory.mktemp("tiny_cifar"), {"train": 12, "test": 2})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ResNet-50 saved in the project's checkpoint format (half precision)."""
    import torch

    import utils
    from course import models
    from resnet import ResNet50

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet50_tiny.pt"
    meta = {"arch": "resnet50", "num_classes": 10, "classes": list(utils.CIFAR10_CLASSES), "epoch": 1,
            "accuracy": 10.0, "accuracy_split": "validation", "recipe": {"test": True}}
    models.save_checkpoint(path, ResNet50(10), meta, half=True)
    return path


def fixed_speed_choice(arch, training, device, precision="auto"):
    """speed.choose with one answer on every CPU: the precision asked for (fp32 for auto), channels_last, plain 1x1
    convolutions. For the tests whose subject is not the speed choice: what they compute must not depend on
    whether the CPU at hand has native bf16."""
    from course import speed

    config = speed.Config(precision if precision in ("fp32", "bf16") else "fp32", True, False)
    return speed.Choice(config, training, "fixed for the tests")


def side_by_side(*calls):
    """The results of `calls` (functions without arguments), run two at a time: for subprocesses that spend seconds
    on one core each (importing torch), so that on a 2-core machine two of them take about the time of one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


@contextlib.contextmanager
def speed_fixed():
    """speed.choose is fixed_speed_choice inside the block (tests/course/test_speed.py tests the real one); for a
    fixture of a whole module, which cannot take the fixed_speed fixture."""
    from course import speed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(speed, "choose", fixed_speed_choice)
        yield


@pytest.fixture
def fixed_speed():
    """speed.choose is fixed_speed_choice during the test."""
    with speed_fixed():
        yield
