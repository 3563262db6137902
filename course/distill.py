"""Knowledge distillation (Hinton et al., 2015): a student learns from the labels and from a teacher's predictions.

    python train.py --model resnet50 --teacher ~/.cache/resnet50-cifar10/vgg16-run1/best.pt ...

The teacher is any trained checkpoint of this project with the run's classes (e.g. a VGG16-BN), or several taught
as one `Ensemble`: train.py runs it frozen, in eval mode and without gradients, on the same augmented batch as the
student, the way the run's speed choice says, and `Distillation` mixes its softened predictions into the loss.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from course import models, speed
from course.cli import UserError


class Distillation(nn.Module):
    """Knowledge distillation (Hinton et al., 2015): (1 - W) * criterion + W * T^2 * KL(teacher_T || student_T).

    Both softmaxes are taken at temperature T; the T^2 keeps the soft term's gradients as large as the hard
    term's whatever T is. Computed in float32, as bf16 autocast would round the small probabilities away.
    """

    def __init__(self, criterion: nn.Module, weight: float, temperature: float):
        super().__init__()
        self.criterion, self.weight, self.temperature = criterion, weight, temperature

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        student = F.log_softmax(logits.float() / t, dim=1)
        teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
        soft = F.kl_div(student, teacher, log_target=True, reduction="batchmean")  # KL(teacher || student)
        return (1 - self.weight) * self.criterion(logits, labels) + self.weight * t * t * soft


class Ensemble(nn.Module):
    """Several teachers as one: the mean of their log-probabilities, i.e. the normalized geometric mean of their
    predictions. Its outputs are logits (softmax ignores the constant), so Distillation takes them as one teacher's."""

    def __init__(self, teachers: list[nn.Module]):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.log_softmax(t(images).float(), dim=1) for t in self.teachers]).mean(0)


def load_teacher(paths: list[str], classes: tuple[str, ...], device, config: speed.Config) -> nn.Module:
    """The teacher of --teacher: one checkpoint's model, or the Ensemble of several; frozen, in eval mode, run the way
    `config` says."""
    teachers = [load_one_teacher(path, classes, device, config) for path in paths]
    return teachers[0] if len(teachers) == 1 else Ensemble(teachers).eval()


def load_one_teacher(path: str, classes: tuple[str, ...], device, config: speed.Config) -> nn.Module:
    """A trained model of any of MODELS, frozen in eval mode and run the way `config` says."""
    teacher, state = models.load_trained(path)
    if tuple(state.get("classes", ())) != tuple(classes):
        raise UserError(
            f"the teacher {path} predicts {len(state.get('classes', ()))} classes "
            f"({', '.join(state.get('classes', ()))}), but this run trains on {len(classes)} "
            f"({', '.join(classes)}): the two softmaxes must be over the same classes, in the same order. "
            "Pass a teacher trained with the run's --classes, or change --classes to the teacher's.")
    teacher.requires_grad_(False)
    return speed.prepare(teacher, device, config).eval()  # eval: its batch-norm uses its own statistics
