"""Model selection on validation: keep a copy of the weights of the best epoch so far (checkpointable)."""

from __future__ import annotations

import math

import torch

from tppeft.engine.checkpoint import copy_into


class BestSoFar:
    """The best epoch by a score (higher is better; NaN never wins) and a copy of its parameters."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.score = -math.inf
        self.epoch: int | None = None
        self.val: dict = {}
        self.state: list[torch.Tensor] | None = None

    def update(self, score: float, epoch: int, val: dict) -> bool:
        if not score > self.score:
            return False
        self.score, self.epoch, self.val = score, epoch, dict(val)
        self.state = [p.detach().clone() for p in self.params]
        return True

    def restore(self) -> None:
        """Put the best epoch's weights back into the parameters."""
        copy_into(self.params, self.state)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"best.{i}": t for i, t in enumerate(self.state or [])}
        return tensors, {"score": self.score, "epoch": self.epoch, "val": self.val}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.score, self.epoch, self.val = meta["score"], meta["epoch"], dict(meta["val"])
        device = self.params[0].device
        self.state = [tensors[f"best.{i}"].to(device) for i in range(len(self.params))] if self.epoch else None
