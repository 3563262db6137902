"""train.py --teacher: knowledge distillation from a trained model (here a tiny run of the airbench net, the
project's own teacher: tools/train_teacher.py) into a student (the ResNet-50 in the course; here the airbench net)."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import speed_fixed

import train
import utils
from course import distill, models, speed


def tiny_run(data, out, *extra):
    """A one-epoch run of the airbench net in fp32; the tests that train use fixed_speed (no timing: speed is not
    their subject). The student is the small net too: the subject is train.py's --teacher, which takes any student
    (a ResNet-50 student: 3 runs of 0.24 GB of checkpoints each, for the same assertions)."""
    return ["--data-dir", str(data), "--out", str(out), "--val-per-class", "3", "--batch-size", "32", "--device", "cpu",
            "--precision", "fp32", "--epochs", "1", "--model", "airbench", *extra]


@pytest.fixture(scope="module")
def teacher(tiny_data, tmp_path_factory) -> str:
    """The best.pt of a one-epoch airbench run on the tiny data: a checkpoint train.py wrote, with its metadata."""
    out = tmp_path_factory.mktemp("teacher")
    with speed_fixed():
        train.main(tiny_run(tiny_data, out))
    return str(out / "best.pt")


def test_distillation_loss_is_the_formula():
    torch.manual_seed(0)
    logits, teacher_logits, labels = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    t, w = 4.0, 0.3
    p_teacher = F.softmax(teacher_logits / t, 1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(logits / t, 1))).sum(1).mean()
    expected = (1 - w) * ce(logits, labels) + w * t * t * kl
    loss = distill.Distillation(ce, w, t)(logits, labels, teacher_logits)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    hard_only = distill.Distillation(ce, 0.0, t)(logits, labels, teacher_logits)
    assert hard_only.item() == pytest.approx(ce(logits, labels).item())
    same = distill.Distillation(ce, 0.5, t)(logits, labels, logits)  # a student that agrees with its teacher: KL = 0
    assert same.item() == pytest.approx(0.5 * ce(logits, labels).item(), rel=1e-5)


def test_a_run_with_a_teacher_trains_records_it_and_its_loss_differs(tiny_data, tmp_path, teacher, fixed_speed):
    train.main(tiny_run(tiny_data, tmp_path / "alone"))
    train.main(tiny_run(tiny_data, tmp_path / "taught", "--teacher", teacher))
    alone = json.loads((tmp_path / "alone" / "history.json").read_text())
    taught = json.loads((tmp_path / "taught" / "history.json").read_text())
    recipe = models.load_checkpoint(tmp_path / "taught" / "last.pt")["recipe"]
    assert recipe["teacher"] == teacher and recipe["kd_weight"] == 0.5 and recipe["kd_temperature"] == 4.0
    assert "teacher" not in models.load_checkpoint(tmp_path / "alone" / "last.pt")["recipe"]
    # same seed, same batches, same first weights: only the loss differs
    assert taught[0]["train_loss"] != pytest.approx(alone[0]["train_loss"], rel=1e-3)
    assert torch.isfinite(torch.tensor(taught[0]["train_loss"]))
    with pytest.raises(utils.UserError, match="another recipe"):  # the teacher's settings are part of the recipe
        train.main(tiny_run(tiny_data, tmp_path / "taught", "--teacher", teacher, "--kd-weight", "0.9", "--resume"))


def test_the_teacher_is_frozen_in_eval_mode(teacher):
    for paths in ([teacher], [teacher, teacher]):  # one teacher, and an ensemble
        model = distill.load_teacher(paths, utils.CIFAR10_CLASSES, torch.device("cpu"), speed.COURSE_WAY)
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert isinstance(model, distill.Ensemble) == (len(paths) == 2)


def test_an_ensemble_teaches_the_mean_of_its_log_probabilities():
    torch.manual_seed(0)
    first, second = nn.Linear(5, 10), nn.Linear(5, 10)
    x = torch.randn(4, 5)
    expected = (F.log_softmax(first(x), 1) + F.log_softmax(second(x), 1)) / 2
    ensemble = distill.Ensemble([first, second])
    assert torch.allclose(ensemble(x), expected, atol=1e-6)
    # as targets, an ensemble of one model's copies is that model: the same softmax at any temperature
    alone = distill.Ensemble([first, first])(x)
    assert torch.allclose(F.softmax(alone / 4, 1), F.softmax(first(x) / 4, 1), atol=1e-6)


def test_a_run_with_two_teachers_records_both(tiny_data, tmp_path, teacher, fixed_speed):
    train.main(tiny_run(tiny_data, tmp_path, "--teacher", teacher, teacher))
    assert models.load_checkpoint(tmp_path / "last.pt")["recipe"]["teacher"] == [teacher, teacher]


def test_a_teacher_of_other_classes_is_refused_clearly(tiny_data, tmp_path, teacher, fixed_speed):
    with pytest.raises(utils.UserError, match="the two softmaxes must be over the same classes"):
        train.main(tiny_run(tiny_data, tmp_path, "--teacher", teacher, "--classes", "airplane,bird"))


def test_kd_flags_need_a_teacher_and_are_explained(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--kd-weight", "0.3"])
    assert "only apply with --teacher" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--teacher", "t.pt", "--kd-weight", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--teacher CHECKPOINT" in help_text and "W * T^2 * KL(teacher || student)" in help_text
    assert "softmax temperature T" in help_text
