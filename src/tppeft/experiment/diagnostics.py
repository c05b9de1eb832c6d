"""Diagnostics of a TPP run before any label trains anything: a linear probe of the frozen features (the
target parameters as they are) and how far the TPP stage moved the target parameters."""

from __future__ import annotations

import torch

from tppeft.data import iterate_batches
from tppeft.experiment.context import Context
from tppeft.experiment.model import RunModel
from tppeft.probe import lora_update_norms, movement, probe_run


def probe_possible(ctx: Context, seed: int) -> bool:
    """A probe needs two classes or more in the labelled training images and in validation and test."""
    chosen = ctx.labelled(seed)
    train = ctx.data["train"].labels if chosen is None else ctx.data["train"].labels[chosen.to(ctx.device)]
    return all(len(torch.unique(y)) > 1 for y in (train, ctx.data["val"].labels, ctx.data["test"].labels))


def probe_targets(ctx: Context, run: RunModel, seed: int) -> dict:
    """Linear probe of ``run.vit``'s features (primary metric; C chosen on validation). It fits on the labelled
    training images that fine-tuning of run ``seed`` sees, so it uses no label the arms do not."""
    chosen = ctx.labelled(seed)

    def indices(split: str) -> torch.Tensor:
        if split == "train" and chosen is not None:
            return chosen
        return torch.arange(len(ctx.data[split]))

    def batches(split: str):
        data = ctx.data[split]
        idx = indices(split)
        for part in iterate_batches(len(idx), ctx.cfg.eval_batch_size):
            yield ctx.normalise(data.pixels(idx[part].to(ctx.device)))

    def labels(split: str):
        return ctx.data[split].labels[indices(split).to(ctx.device)].cpu().numpy()

    return probe_run(run.vit, batches, labels, ctx.task.primary_metric, seed)


def probe_change_text(before: dict, after: dict) -> str:
    """The log line of a TPP stage's linear probe, at initialisation and after the stage."""
    return (f"linear probe of the features ({after['metric']}, test): {before['test']:.4f} at initialisation -> "
            f"{after['test']:.4f} after the TPP stage")


def target_movement(run: RunModel, init: dict[str, torch.Tensor]) -> dict:
    """||after - init|| / ||init|| over the target parameters and, for LoRA, ||scaling B A|| / ||W|| per layer
    (mean and maximum; the per-layer values stay out of the record)."""
    moved = movement(init, run.target_tensors())
    lora = lora_update_norms(run.vit)
    if lora is not None:
        moved["lora_update_ratio"] = {"mean": lora["mean"], "max": lora["max"]}
    return moved
