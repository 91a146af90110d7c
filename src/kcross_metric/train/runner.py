"""Seeded, resumable epoch loop shared by the training stages.

A run directory holds ``model.safetensors`` (the weights after the last finished epoch),
``optimizer.pt`` (optimizer state, written and read by this package only, loaded with
``weights_only=True``), ``state.json`` (finished epochs, seed, config) and ``log.jsonl`` (one line
per epoch with the mean losses and validation figures).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._util.files import atomic_write, atomic_write_text
from ..weights import save_safetensors

__all__ = ["seed_everything", "RunDir", "run_epochs"]


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def load_state(self) -> dict[str, Any]:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text(encoding="utf-8"))
        return {"epochs_done": 0}

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_safetensors(tensors, self.path / "model.safetensors", overwrite=True,
                         metadata={"epochs_done": str(state["epochs_done"])})
        atomic_write(self.path / "optimizer.pt", lambda tmp: torch.save(optimizer.state_dict(), tmp))
        atomic_write_text(self.state_file, json.dumps(state, indent=2), overwrite=True)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        from ..weights import load_safetensors, load_state_dict_strict

        state = self.load_state()
        if state["epochs_done"] > 0:
            load_state_dict_strict(model, load_safetensors(self.path / "model.safetensors"))
            optimizer.load_state_dict(torch.load(self.path / "optimizer.pt", weights_only=True))
        return state

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def run_epochs(
    run: RunDir,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    seed: int,
    config: dict[str, Any],
    train_epoch: Callable[[torch.Generator], dict[str, float]],
    validate: Callable[[], dict[str, float]] | None = None,
    resume: bool = True,
    verbose: bool = True,
    lr_at: Callable[[int], float] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the remaining epochs; each epoch gets its own generator seeded by (seed, epoch).

    ``lr_at(epoch)`` (0-based) sets the learning rate of every parameter group at the start of each
    epoch, so a resumed run follows the same schedule as an uninterrupted one. ``on_epoch_end(epoch)``
    (1-based) runs after validation and before the run state records the epoch as done (e.g. to
    keep a checkpoint per epoch).
    """
    state = run.restore(model, optimizer) if resume else {"epochs_done": 0}
    records = []
    for epoch in range(state["epochs_done"], epochs):
        start = time.time()
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch)
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        losses = train_epoch(generator)
        model.eval()
        record: dict[str, Any] = {"epoch": epoch + 1, **losses}
        if validate is not None:
            with torch.no_grad():
                record.update({f"val_{k}": v for k, v in validate().items()})
        record["seconds"] = round(time.time() - start, 1)
        run.log(record)
        records.append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
        state = {"epochs_done": epoch + 1, "seed": seed, "config": config}
        run.save(model, optimizer, state)
        if verbose:
            print(json.dumps(record), flush=True)
    return records
