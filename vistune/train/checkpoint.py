"""Resume and checkpoint steps: the run's progress (history, best weights, early-stopping count)
and the per-epoch checkpoint that lets a killed run continue exactly where it stopped.

A checkpoint resumes only a run with the same recipe, data and world size (its fingerprint);
device, compile, threads and memory format are how a run executes, not what it computes, so a
run checkpointed on one device resumes on another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vistune.config import AugmentCfg, TrainCfg, to_dict
from vistune.data.prepared import PreparedData
from vistune.io import save_torch
from vistune.train.steps import Run

_RUNTIME_KEYS = ("device", "compile", "threads", "channels_last")
_NEWER_DEFAULTS = {
    "sync_bn": False,
    "lr_scaling": "linear",
    "amp_dtype": "auto",
    "keep": "best",
}  # at these values, older checkpoints still resume


@dataclass
class Progress:
    """Where a run stands after each epoch (what a checkpoint stores besides the weights)."""

    best_state: dict[str, torch.Tensor] = field(repr=False)  # the weights kept (train.keep: best or last)
    history: list[dict[str, float]] = field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = -1
    kept_epoch: int = -1  # the epoch of `best_state`: best_epoch under keep=best, the latest under keep=last
    bad_epochs: int = 0
    start: int = 0  # first epoch still to run
    stopped_early: bool = False

    def record(self, row: dict[str, float], run: Run, epoch: int) -> None:
        """Append an epoch's row, keep the best (or latest) weights, decide early stopping."""
        self.history.append(row)
        better = row["val_accuracy"] > self.best_acc
        if better:
            self.best_acc, self.best_epoch, self.bad_epochs = row["val_accuracy"], epoch + 1, 0
        else:
            self.bad_epochs += 1
        if better or run.tcfg.keep == "last":
            self.kept_epoch = epoch + 1
            self.best_state = cpu_state(run.ema.module if run.ema else run.model)
        t = run.tcfg
        self.stopped_early = t.patience > 0 and self.bad_epochs >= t.patience and epoch + 1 < t.epochs


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy in plain (NCHW-contiguous) layout, whatever the training memory format."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def fingerprint(tcfg: TrainCfg, acfg: AugmentCfg, data: PreparedData, world_size: int) -> str:
    train = {k: v for k, v in to_dict(tcfg).items() if k not in _RUNTIME_KEYS}
    train = {k: v for k, v in train.items() if not (k in _NEWER_DEFAULTS and v == _NEWER_DEFAULTS[k])}
    if tcfg.adversarial == "none":  # checkpoints from before the adversarial options still resume
        train = {k: v for k, v in train.items() if k != "adversarial" and not k.startswith("adv_")}
    key = {
        "train": train,
        "augment": to_dict(acfg),
        "classes": data.classes,
        "n": {s: len(a) for s, a in data.splits.items()},
        "world_size": world_size,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def resume(run: Run, path: Path | None, fp: str) -> Progress:
    """Progress from the checkpoint at `path` when it belongs to this run (else a fresh start);
    model, optimizer, EMA and grad-scaler state are loaded into `run`."""
    state = _load(path, fp)
    if state is None:
        return Progress(best_state=cpu_state(run.ema.module if run.ema else run.model))
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    return Progress(
        best_state=state["best_state"],
        history=state["history"],
        best_acc=state["best_acc"],
        best_epoch=state["best_epoch"],
        kept_epoch=state.get("kept_epoch", state["best_epoch"]),
        bad_epochs=state["bad_epochs"],
        start=state["epoch"] + 1,
        stopped_early=bool(state.get("stopped_early")),
    )


def _load(path: Path | None, fp: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("fingerprint") == fp else None


def save(path: Path, run: Run, progress: Progress, epoch: int, fp: str) -> None:
    """Atomically rewrite the checkpoint after `epoch` (rank 0 only under DDP)."""
    state = {
        "fingerprint": fp,
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "ema": run.ema.state_dict() if run.ema else None,
        "scaler": run.scaler.state_dict(),
        "history": progress.history,
        "best_acc": progress.best_acc,
        "best_epoch": progress.best_epoch,
        "kept_epoch": progress.kept_epoch,
        "bad_epochs": progress.bad_epochs,
        "best_state": progress.best_state,
        "stopped_early": progress.stopped_early,
    }
    save_torch(state, path)  # same bytes for the same state, like model.pt
