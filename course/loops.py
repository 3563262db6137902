"""The loops: one training epoch and an evaluation, with their progress lines and the course's print lines.

main.py fine-tunes with them; train.py's from-scratch trainer builds on them (resume, torchrun, distillation and
EMA are its own). They return numbers; the callers print, except for the course's step lines, which are part of
the epoch.
"""
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from course import cli, speed

# The recipe values main.py, train.py and the benchmarks share.
LOG_EVERY = 100  # steps between the course's "Epoch [..], Step [..] Loss: .." lines
EVAL_BATCH_SIZE = 500  # evaluation only: no gradients, so a large batch is cheap
MOMENTUM = 0.9  # SGD momentum everywhere in this project


class Progress:
    """A tqdm bar on a terminal; elsewhere (a log, a notebook) a short line at every tenth of the loop."""

    def __init__(self, total: int, desc: str, batch_size: int):
        self.total, self.desc, self.batch_size = total, desc, batch_size
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=not self.terminal)
        self.started, self.next_tenth = time.perf_counter(), 1

    def update(self, step: int) -> None:
        """Advance to `step` (1-based); prints '  .. epoch 1: 45/450 steps (10 %), 210 img/s, 3 min 13 s left'."""
        self.bar.update(1)
        if self.terminal or step < self.next_tenth * self.total / 10:
            return
        while step >= self.next_tenth * self.total / 10:
            self.next_tenth += 1
        elapsed = time.perf_counter() - self.started
        rate = step * self.batch_size / elapsed
        left = cli.format_seconds(elapsed / step * (self.total - step))
        print(f"  .. {self.desc}: {step}/{self.total} steps ({100 * step // self.total} %), "
              f"{rate:.0f} img/s, {left} left", flush=True)

    def close(self) -> None:
        self.bar.close()


def course_step_line(epoch: int, epochs: int, step: int, total_steps: int, loss: float) -> str:
    """The course's step line, byte for byte."""
    return f"Epoch [{epoch}/{epochs}], Step [{step}/{total_steps}] Loss: {loss:.4f}"


@dataclass
class EpochStats:
    """Sums over one training epoch (of this process's share, under torchrun): the trainer adds up the ranks'."""
    loss_sum: float
    correct: int
    seen: int
    steps: int

    @property
    def loss(self) -> float:
        """The mean of the steps' losses."""
        return self.loss_sum / self.steps

    @property
    def accuracy(self) -> float:
        """Training accuracy (%) on the augmented batches."""
        return 100.0 * self.correct / self.seen


def train_one_epoch(model, batches, optimizer, criterion, device, epoch: int, epochs: int, scheduler=None,
                    config: speed.Config = speed.COURSE_WAY, ema: AveragedModel | None = None,
                    quiet: bool = False, teacher: nn.Module | None = None, ranks: int = 1) -> EpochStats:
    """One pass over `batches`; prints the course's step lines (unless quiet). With a teacher (knowledge
    distillation), `criterion` also gets the teacher's logits on the same batch. `ranks`: the processes that
    share the epoch under torchrun, for the images/s of the progress lines."""
    model.train()
    total_steps = len(batches)
    window_loss, window_steps, epoch_loss = 0.0, 0, 0.0
    correct, seen = torch.zeros((), dtype=torch.long, device=device), 0  # counted on the device: no sync per step
    progress = Progress(total_steps, f"epoch {epoch}", batches.batch_size * ranks)
    for step, (images, labels) in enumerate(batches, start=1):
        with speed.autocast(device, config):
            logits = model(images)
            if teacher is None:
                loss = criterion(logits, labels)
            else:
                with torch.no_grad():  # the teacher only gives targets: no graph, no gradients
                    targets = teacher(images)  # on the same augmented batch as the student
                loss = criterion(logits, labels, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        loss_value = loss.item()
        if loss_value != loss_value:  # NaN: stop before the weights are ruined further
            progress.close()
            raise cli.UserError(f"the loss became NaN at epoch {epoch}, step {step}: lower --lr and try again.")
        window_loss += loss_value
        window_steps += 1
        epoch_loss += loss_value
        if (step % LOG_EVERY == 0 or step == total_steps) and not quiet:
            tqdm.write(course_step_line(epoch, epochs, step, total_steps, window_loss / window_steps))
            sys.stdout.flush()
            window_loss, window_steps = 0.0, 0
        if not quiet:
            progress.update(step)
    progress.close()
    return EpochStats(epoch_loss, int(correct.item()), seen, total_steps)


@dataclass
class Evaluation:
    """What `evaluate` measured: accuracy (%), mean loss (nan without a criterion) and every prediction."""
    accuracy: float
    loss: float
    predictions: torch.Tensor


@torch.inference_mode()
def evaluate(model, batches, device, config: speed.Config = speed.COURSE_WAY, criterion=None,
             fold: bool = True) -> Evaluation:
    """Accuracy, loss and predictions of `model` on `batches`, in order. Prints nothing. `fold`: run an
    inference-only copy with the batch-norms folded into the convolutions, prepared for `config` (faster; the
    model is untouched); without it, `model` must already be prepared for `config`."""
    model.eval()
    if fold:
        model = speed.prepare(speed.fold_batch_norms(model), device, config)
    correct, seen, loss_sum, predictions = 0, 0, 0.0, []
    progress = Progress(len(batches), "evaluating", batches.batch_size)
    for _step, (images, labels) in enumerate(batches, start=1):
        with speed.autocast(device, config):
            logits = model(images)
        if criterion is not None:
            loss_sum += criterion(logits.float(), labels).item() * len(labels)
        predictions.append(logits.argmax(1).cpu())
        correct += (predictions[-1] == labels.cpu()).sum().item()
        seen += len(labels)
        progress.bar.update(1)
    progress.close()
    return Evaluation(100.0 * correct / seen, loss_sum / seen if criterion is not None else float("nan"),
                      torch.cat(predictions))


def accuracy_line(accuracy: float, split_name: str = "test") -> str:
    """The course's accuracy line, byte for byte."""
    return f"Accuracy of the model on the {split_name} images: {accuracy:.2f} %"


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, nesterov: bool = False):
    """SGD with momentum (Nesterov or not) or Adam."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=nesterov, weight_decay=weight_decay)


def build_schedule(optimizer, schedule: str, lr: float, epochs: int, steps_per_epoch: int):
    """one-cycle (warm up to lr over 15 %, then cosine down to ~0), cosine (from lr down to 0, no warm-up: for
    fine-tuning a converged model) or a constant lr; stepped once per batch."""
    if schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                                   pct_start=0.15)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


