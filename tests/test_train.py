"""train.py: a tiny from-scratch run, its checkpoints, resume after an interruption, and export."""
import contextlib
import io
import json
import re

import pytest
import torch
from conftest import speed_fixed

import train
import utils
from course import models, resume, speed


def tiny_run(data, out, *extra):
    """A tiny run in fp32 (a later --precision wins): no test depends on whether the CPU has native bf16.
    All but the EMA test (auto) also take fixed_speed: speed is not their subject. The small airbench net (a later
    --model wins): the tests of resuming, exporting and recording test train.py, not a model; one ResNet-50 run
    (resnet50_run) serves the tests of what a run and its export write."""
    return ["--data-dir", str(data), "--out", str(out), "--val-per-class", "3", "--batch-size", "32", "--device", "cpu",
            "--precision", "fp32", "--model", "airbench", *extra]


def interrupt_at_epoch(epoch: int, monkeypatch):
    """Make train.main stop with Ctrl-C when epoch `epoch` starts; returns the real train_one_epoch."""
    real_epoch = train.loops.train_one_epoch

    def interrupted(*args, **kwargs):
        if args[5] == epoch:  # the epoch number
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train.loops, "train_one_epoch", interrupted)
    return real_epoch


@pytest.fixture(scope="module")
def resnet50_run(tiny_data, tmp_path_factory) -> dict:
    """One epoch of the ResNet-50 and its export, shared by the tests of what they write: {"out", "printed",
    "exported", "target"} (the printed text of the run and of the export)."""
    out = tmp_path_factory.mktemp("resnet50")
    target = out / "shipped.pt"
    printed = {}
    with speed_fixed():
        for name, extra in (("printed", ()), ("exported", ("--export", str(target)))):
            with contextlib.redirect_stdout(io.StringIO()) as text:
                train.main(tiny_run(tiny_data, out, "--epochs", "1", "--model", "resnet50", *extra))
            printed[name] = text.getvalue()
    return {"out": out, "target": target, **printed}


def test_run_saves_last_best_and_history(resnet50_run, tiny_data):
    out, printed = resnet50_run["out"], resnet50_run["printed"]
    assert "90 training and 30 validation images" in printed and printed.startswith("Speed (training): ")
    assert re.search(r"^Epoch \[1/1\], Step \[3/3\] Loss: \d+\.\d{4}$", printed, re.M)
    assert re.search(r"^Accuracy of the model on the validation images: \d+\.\d{2} %$", printed, re.M)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    for name in ("last.pt", "best.pt"):
        state = models.load_checkpoint(out / name)
        assert state["arch"] == "resnet50" and state["epoch"] == 1 and state["recipe"]["epochs"] == 1
        assert {"optimizer", "scheduler", "torch_rng", "batches_rng"} <= state.keys()
    with pytest.raises(utils.UserError, match="already holds a run"):
        train.main(tiny_run(tiny_data, out, "--epochs", "1", "--model", "resnet50"))


def test_resume_continues_where_it_stopped(tiny_data, tmp_path, monkeypatch, fixed_speed):
    train.main(tiny_run(tiny_data, tmp_path / "straight", "--epochs", "2"))

    real_epoch = interrupt_at_epoch(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_run(tiny_data, tmp_path / "resumed", "--epochs", "2"))
    monkeypatch.setattr(train.loops, "train_one_epoch", real_epoch)
    with pytest.raises(utils.UserError, match="another recipe"):
        train.main(tiny_run(tiny_data, tmp_path / "resumed", "--epochs", "3", "--resume"))
    train.main(tiny_run(tiny_data, tmp_path / "resumed", "--epochs", "2", "--resume"))

    straight = models.load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = models.load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][1]["train_loss"] == pytest.approx(straight["history"][1]["train_loss"], rel=1e-3)
    for key, value in straight["model"].items():
        assert torch.allclose(value.float(), resumed["model"][key].float(), atol=1e-3), key


def test_export_writes_a_small_checked_copy(resnet50_run):
    out, target = resnet50_run["out"], resnet50_run["target"]
    assert "after scaling the convolutions up" in resnet50_run["exported"]
    shipped = models.load_checkpoint(target)
    assert shipped["model"]["fc.weight"].dtype == torch.float16 and "optimizer" not in shipped
    assert target.stat().st_size < 0.6 * (out / "best.pt").stat().st_size
    assert [p.name for p in out.iterdir() if p.name.endswith(".check")] == []
    assert len(shipped["scaled_up"]["factors"]) == 53


def test_init_from_an_exported_file_starts_from_the_run_s_own_weights(resnet50_run):
    """The export scales the convolutions up (for Adam); --init scales them back, or SGD would barely move them."""
    best = models.load_checkpoint(resnet50_run["out"] / "best.pt")["model"]
    target = resnet50_run["target"]
    shipped = models.load_checkpoint(target)
    assert max(shipped["scaled_up"]["factors"]) > 2  # the file's convolutions are larger than the run's
    model, _ = train.starting_model(train.parse_args(["--init", str(target)]), tuple(shipped["classes"]))
    for key, value in model.state_dict().items():
        if value.is_floating_point():  # fp16 storage: relative spacing 2^-10, absolute 2^-24 near zero (subnormals)
            assert torch.allclose(value, best[key].float(), rtol=2 ** -9, atol=2 ** -24), key


def test_export_of_a_model_without_a_batch_norm_after_a_convolution_says_so(tiny_data, tmp_path, capsys, fixed_speed):
    train.main(tiny_run(tiny_data, tmp_path, "--epochs", "1"))  # airbench: no nn.Sequential of conv and batch-norm
    train.main(tiny_run(tiny_data, tmp_path, "--epochs", "1", "--export", str(tmp_path / "shipped.pt")))
    assert "(none feeds a batch-norm: k = 1)" in capsys.readouterr().out
    assert models.load_checkpoint(tmp_path / "shipped.pt")["scaled_up"]["factors"] == []


def test_a_second_stage_records_the_first(tiny_data, tmp_path, fixed_speed):
    train.main(tiny_run(tiny_data, tmp_path / "first", "--epochs", "2"))
    first = models.load_checkpoint(tmp_path / "first" / "best.pt")
    init = str(tmp_path / "first" / "best.pt")
    train.main(tiny_run(tiny_data, tmp_path / "second", "--epochs", "1", "--lr", "0.05", "--init", init))
    target = tmp_path / "shipped.pt"
    train.main(tiny_run(tiny_data, tmp_path / "second", "--epochs", "1", "--lr", "0.05", "--init", init,
                        "--export", str(target)))
    shipped = models.load_checkpoint(target)
    assert shipped["epoch"] == 1 and shipped["total_epochs"] == first["epoch"] + 1
    [stage] = shipped["stages"]
    assert stage["epochs"] == first["epoch"] and stage["recipe"] == first["recipe"]
    assert stage["history"] == first["history"]
    assert shipped["recipe"]["lr"] == 0.05 and shipped["recipe"]["init"].endswith("best.pt")
    history = json.loads((tmp_path / "second" / "history.json").read_text())
    assert [row["epoch"] for row in resume.whole_history(shipped, history)] == list(range(1, first["epoch"] + 2))


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size"])
def test_non_positive_numbers_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args([flag, "0"])
    assert exit_info.value.code == 2 and "must be a positive whole number" in capsys.readouterr().err


def test_ema_and_cutout_run_and_record_both_accuracies(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "native_bf16", lambda device: False)  # so auto means fp32, whatever the CPU
    train.main(tiny_run(tiny_data, tmp_path, "--epochs", "1", "--ema", "0.9", "--cutout", "8", "--precision", "auto"))
    state = models.load_checkpoint(tmp_path / "last.pt")
    assert state["recipe"]["ema"] == 0.9 and state["recipe"]["augmentation"].endswith("+cutout-8")
    assert state["recipe"]["precision"] == "fp32"  # auto records what it chose, not "auto"
    assert state["model"].keys() == state["train_model"].keys()
    assert not torch.equal(state["model"]["fc.weight"], state["train_model"]["fc.weight"])  # the average differs
    row = state["history"][0]
    assert row["val_accuracy"] == max(row["val_accuracy_ema"], row["val_accuracy_raw"])
    best = models.load_checkpoint(tmp_path / "best.pt")
    kept = state["train_model"] if row["kept"] == "raw" else state["model"]
    assert torch.equal(best["model"]["fc.weight"], kept["fc.weight"])


@pytest.mark.parametrize("raw_accuracy,kept", [(60.0, "raw"), (40.0, "average")])
def test_ema_keeps_the_better_of_the_average_and_the_raw_weights(raw_accuracy, kept, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ema = train.build_ema(model, 0.9)
    scores = {id(model): raw_accuracy, id(ema.module): 50.0}
    monkeypatch.setattr(train.loops, "evaluate",
                        lambda module, *args: train.loops.Evaluation(scores[id(module)], 1.0, None))
    validated, module, record = train.validate(model, ema, None, "cpu", speed.COURSE_WAY, None)
    assert record == {"val_accuracy_ema": 50.0, "val_accuracy_raw": raw_accuracy, "kept": kept}
    assert validated.accuracy == max(50.0, raw_accuracy)
    assert module is (model if kept == "raw" else ema.module)


def test_resume_switches_precision_only_when_asked_and_records_it(tiny_data, tmp_path, monkeypatch, capsys,
                                                                  fixed_speed):
    two = ("--classes", "cat,dog")  # 18 training images: bf16 is emulated, 5x slower, on CPUs without it
    real_epoch = interrupt_at_epoch(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # a bf16 run...
        train.main(tiny_run(tiny_data, tmp_path, *two, "--epochs", "3", "--precision", "bf16"))
    monkeypatch.setattr(train.loops, "train_one_epoch", real_epoch)
    interrupt_at_epoch(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # ...goes on in fp32 from epoch 2...
        train.main(tiny_run(tiny_data, tmp_path, *two, "--epochs", "3", "--resume", "--precision", "fp32"))
    assert "precision switched bf16 -> fp32 from epoch 2 on" in capsys.readouterr().out
    monkeypatch.setattr(train.loops, "train_one_epoch", real_epoch)
    # ...and stays fp32
    train.main(tiny_run(tiny_data, tmp_path, *two, "--epochs", "3", "--resume", "--precision", "auto"))
    state = models.load_checkpoint(tmp_path / "last.pt")
    assert state["recipe"]["precision"] == "fp32"
    assert [row.get("precision_switch") for row in state["history"]] == [None, "bf16 -> fp32", None]
    assert [row["speed"].split(",")[0] for row in state["history"]] == ["bf16 autocast", "fp32", "fp32"]


def test_resume_accepts_a_run_saved_before_precision_and_world_size_were_recorded(tiny_data, tmp_path, monkeypatch,
                                                                                  fixed_speed):
    real_epoch = interrupt_at_epoch(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_run(tiny_data, tmp_path, "--epochs", "2"))
    monkeypatch.setattr(train.loops, "train_one_epoch", real_epoch)
    state = models.load_checkpoint(tmp_path / "last.pt")
    del state["recipe"]["precision"], state["recipe"]["world_size"]  # what runs of earlier versions of train.py hold
    torch.save(state, tmp_path / "last.pt")
    train.main(tiny_run(tiny_data, tmp_path, "--epochs", "2", "--resume"))
    assert [row["epoch"] for row in models.load_checkpoint(tmp_path / "last.pt")["history"]] == [1, 2]


@pytest.mark.parametrize("schedule, first, last", [("cosine", 0.1, 0.0), ("constant", 0.1, 0.1)])
def test_fine_tuning_schedules_start_at_lr_and_cosine_ends_at_zero(schedule, first, last):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = train.loops.build_schedule(optimizer, schedule, 0.1, epochs=2, steps_per_epoch=5)
    rates = []
    for _ in range(10):  # one step per batch, as train_one_epoch does
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(first)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(last, abs=1e-12)
    assert rates == sorted(rates, reverse=True)  # never rises: no warm-up in a fine-tune
