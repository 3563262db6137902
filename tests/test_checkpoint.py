"""The shipped checkpoints: small, safe to load, strict fit to their model (the assignment's ResNet-50,
VGG16-BN with the CIFAR head), honest metadata."""
from pathlib import Path

import pytest
import torch

import main
import utils
from course import models
from course.export import conv_bn_pairs

ARCHS = ("resnet50", "vgg16")  # main.py --model ARCH loads checkpoints/ARCH_cifar10.pt


@pytest.fixture(scope="module", params=ARCHS)
def shipped_path(request) -> Path:
    path = Path(main.CHECKPOINT_DIR) / f"{request.param}_cifar10.pt"
    assert path.is_file(), f"{path} is missing: main.py --model {request.param} loads it by default"
    return path


@pytest.fixture(scope="module")
def shipped(shipped_path) -> dict:
    return torch.load(shipped_path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def shipped_model(shipped) -> torch.nn.Module:
    model = models.build_model(shipped["arch"], 10)
    model.load_state_dict({k: v.float() for k, v in shipped["model"].items()}, strict=True)
    return model.eval()


def test_small_enough_to_ship(shipped_path):
    assert shipped_path.stat().st_size <= 32 * 1024 * 1024  # each version stays in git history for good


def test_loads_strictly_and_gives_finite_logits(shipped_model):
    with torch.inference_mode():
        logits = shipped_model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    assert logits.std(0).mean() > 1e-3  # trained weights tell inputs apart


def test_metadata_says_what_it_is(shipped):
    assert shipped["format"] == models.CHECKPOINT_FORMAT
    assert shipped["arch"] in ARCHS and shipped["num_classes"] == 10
    assert tuple(shipped["classes"]) == utils.CIFAR10_CLASSES
    assert 0 < shipped["epoch"] <= shipped["total_epochs"]
    assert shipped["total_epochs"] == shipped["epoch"] + sum(stage["epochs"] for stage in shipped.get("stages", []))
    assert 10.0 < shipped["accuracy"] <= 100.0 and shipped["accuracy_split"].startswith("validation (5000")
    assert "JPEG copy of the CIFAR-10 training split" in shipped["data"]
    assert "45,000/5,000" in shipped["data"] and "seed 0" in shipped["data"]
    for recipe in [shipped["recipe"]] + [stage["recipe"] for stage in shipped.get("stages", [])]:
        assert {"epochs", "lr", "batch_size", "weight_decay", "schedule", "optimizer", "split_seed"} <= recipe.keys()
        assert recipe["split_seed"] == 0 and recipe["val_per_class"] == 500
    assert shipped["torch_version"] and "optimizer" not in shipped
    # the accuracy recorded is the one of the epoch shipped
    assert shipped["history"][-1]["epoch"] >= shipped["epoch"]
    assert [h["val_accuracy"] for h in shipped["history"] if h["epoch"] == shipped["epoch"]] == [shipped["accuracy"]]
    if shipped["arch"] == "vgg16" or "shipped_accuracy" in shipped:  # exports record it since the VGG16-BN one
        assert abs(shipped["shipped_accuracy"] - shipped["accuracy"]) <= 0.1  # what the fp16 file itself scores


def test_convolutions_are_scaled_up_for_the_course_s_adam(shipped, shipped_model):
    """Issue 31: the export scales each convolution up (course/export.py) so that Adam at lr 1e-3, the course's
    loop, moves it by a small fraction of its size; the file records the factors that `train.py --init` undoes."""
    pairs = conv_bn_pairs(shipped_model)
    assert len(shipped["scaled_up"]["factors"]) == len(pairs) == {"resnet50": 53, "vgg16": 13}[shipped["arch"]]
    assert min(shipped["scaled_up"]["factors"]) >= 1
    for conv, norm in pairs:
        assert conv.weight.pow(2).mean().sqrt() > 0.1  # unscaled, weight decay left them at ~0.005
        assert norm.running_var.max() < 65504  # half precision's largest number: var grew by k^2
