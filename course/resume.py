"""A run's saved state: what train.py writes after each epoch and what --resume reads back and checks."""
import json
from pathlib import Path

import torch

from course import cli, models


def saved_recipe(state: dict) -> dict:
    """A saved run's recipe; runs from before --precision and torchrun trained in fp32, in one process."""
    return {"precision": "fp32", "world_size": 1} | state.get("recipe", {})


def restore_run(state: dict, model, optimizer, scheduler, train_batches, ema) -> tuple[list, int, float]:
    """Put a saved run's weights, optimizer, schedule and random states back; returns history, next epoch, best."""
    weights = {"model": state["train_model"]} if "train_model" in state else state
    models.load_weights(model, {**state, **weights}, state["arch"], tuple(state["classes"]), "last.pt")
    if ema is not None:
        models.load_weights(ema.module, state, state["arch"], tuple(state["classes"]), "last.pt")
        ema.n_averaged.fill_(max(1, state["epoch"]))  # not 0: the next update averages instead of copying
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    train_batches.generator.set_state(state["batches_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["history"], state["epoch"] + 1, state["best_accuracy"]


def save_epoch(out: Path, model, ema, meta: dict, is_best: bool, kept, **state) -> None:
    """last.pt (and best.pt when is_best) and history.json of a run after an epoch.

    best.pt's 'model' holds the weights the epoch kept (`kept`: with --ema, the better of the average and the
    raw weights). last.pt's 'model' holds the average when --ema is on, 'train_model' the raw weights.
    """
    averaged = ema.module if ema is not None else model
    if ema is not None:
        state["train_model"] = {key: value.cpu() for key, value in model.state_dict().items()}
    if is_best:
        models.save_checkpoint(out / "best.pt", kept, meta, **state)
    models.save_checkpoint(out / "last.pt", averaged, meta, **state)
    cli.write_atomically(out / "history.json", json.dumps(state["history"], indent=1))


def open_run(args, out: Path, device) -> tuple[dict | None, str]:
    """The saved state to resume (None for a new run) and the precision the run goes on with."""
    if (out / "last.pt").exists() and not (args.resume or args.export):
        raise cli.UserError(f"{out} already holds a run. Pass --resume to continue it, or choose another --out.")
    if not args.resume:
        return None, args.precision
    if not (out / "last.pt").exists():
        raise cli.UserError(f"nothing to resume: {out / 'last.pt'} does not exist. "
                               "Leave out --resume to start a run.")
    state = models.load_checkpoint(out / "last.pt", device)
    # auto keeps the run's own precision; fp32 or bf16 switches it (e.g. on a CPU without native bf16)
    return state, saved_recipe(state)["precision"] if args.precision == "auto" else args.precision


def check_resumable(state: dict, recipe: dict, out: Path) -> None:
    """Refuse to resume a run with another recipe (the precision may change: open_run decided it)."""
    saved = saved_recipe(state)
    if saved["world_size"] != recipe["world_size"]:
        raise cli.UserError(
            f"{out} was trained by {saved['world_size']} process(es), and this is {recipe['world_size']}: each "
            "process's share of the data and its random draws depend on their number. Resume it with as many "
            f"(torchrun --nnodes x --nproc_per_node = {saved['world_size']}; plain python for 1), or start a new run "
            "with another --out.")
    if saved | {"precision": recipe["precision"]} != recipe:
        raise cli.UserError(f"{out / 'last.pt'} was made with another recipe ({state.get('recipe')}); resume with "
                               "the same flags or use another --out.")


def stages_of(checkpoint: dict) -> list[dict]:
    """The training stages behind a checkpoint: its own earlier stages, then itself."""
    own = {key: checkpoint[key] for key in ("recipe", "accuracy", "history") if key in checkpoint}
    return checkpoint.get("stages", []) + [own | {"epochs": checkpoint.get("epoch", 0)}]


def whole_history(checkpoint: dict, history: list[dict]) -> list[dict]:
    """`history` of a run preceded by its earlier stages' histories, epochs numbered on from one stage to the next."""
    rows, offset = [], 0
    for stage in checkpoint.get("stages", []):
        rows += [row | {"epoch": row["epoch"] + offset} for row in stage.get("history", [])]
        offset += stage["epochs"]
    return rows + [row | {"epoch": row["epoch"] + offset} for row in history]
