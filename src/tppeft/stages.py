"""The two stages of one run: TPP (pretext pre-training of target parameters) and fine-tuning.

Both use :func:`tppeft.engine.train`; they differ in objective and trainable set only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from tppeft.backbones import Backbone, build_backbone, frozen_state_digest
from tppeft.bundled import resolve
from tppeft.config import Config
from tppeft.data import (
    ImageDataset,
    augment_batch,
    iterate_batches,
    load_medmnist,
    resize_images,
    to_model_input,
)
from tppeft.engine import resolve_device, set_threads, train
from tppeft.engine.outputs import append_jsonl
from tppeft.pretext import get_pretext
from tppeft.targets import TargetMethod, get_target_method
from tppeft.tasks import Classifier, classification_loss, classification_metrics
from tppeft.tasks.classification import scores_from_logits

# Offsets that give each source of randomness of a run its own stream, the same in every arm.
# A TPP stage whose held-out pretext loss falls by less than this fraction is reported as not moving.
MIN_PRETEXT_GAIN = 0.01
_STREAMS = {"targets": 11, "pretext": 23, "head": 37, "finetune": 41, "pretext_eval": 53, "eva": 59}


def stream_seed(seed: int, stream: str) -> int:
    return seed * 1000 + _STREAMS[stream]


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


@dataclass
class Context:
    """What every run of one experiment shares: data on the device and the frozen backbone."""

    cfg: Config
    device: torch.device
    data: ImageDataset
    backbone: Backbone
    mean: torch.Tensor
    std: torch.Tensor
    log: Callable[[str], None]
    template_digest: str = ""  # of the shared backbone: no run may change it, whatever it trains

    def batch(self, split: str, idx: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Normalised model input of ``split[idx]``; augmented when a generator is given."""
        images = self.data[split].images[idx.to(self.device)]
        if gen is not None and self.cfg.data.augment:
            d = self.cfg.data
            images = augment_batch(images, gen, d.crop_scale, hflip=d.hflip, vflip=d.vflip)
        return to_model_input(images, self.mean, self.std)


def prepare_context(cfg: Config, log: Callable[[str], None] = print) -> Context:
    device = resolve_device(cfg.device)
    threads = set_threads(cfg.threads) if device.type == "cpu" else None
    backbone = build_backbone(cfg.backbone, cfg.data.image_size)
    data = load_medmnist(resolve(cfg.data.path), cfg.data.limit)
    for split in data.splits.values():
        split.images = resize_images(split.images, backbone.image_size)
    backbone.model.to(device)
    log(f"data: {data.name} ({data.task}, {data.num_classes} classes) train/val/test = "
        f"{len(data['train'])}/{len(data['val'])}/{len(data['test'])} at {backbone.image_size}px; "
        f"backbone: {cfg.backbone.name} from {cfg.backbone.checkpoint or 'timm'}; device {device}"
        + (f" ({threads} threads)" if threads else ""))
    return Context(cfg, device, data.to(device), backbone,
                   torch.tensor(backbone.mean, device=device), torch.tensor(backbone.std, device=device), log,
                   frozen_state_digest(backbone.model))


@dataclass
class RunModel:
    """A fresh copy of the backbone with its trainable set: attached target parameters (``method``), nothing
    (a linear probe: ``method`` None, no names) or the backbone's own weights (``added`` False)."""

    vit: nn.Module
    method: TargetMethod | None
    handle: nn.Module
    target_names: list[str]
    frozen_digest: str
    added: bool = True  # the trainable tensors are new parameters, not the backbone's own
    lr_scale: float = 1.0  # learning-rate factor of the trainable backbone tensors in fine-tuning

    def target_params(self) -> list[nn.Parameter]:
        params = dict(self.vit.named_parameters())
        return [params[n] for n in self.target_names]

    def frozen_unchanged(self) -> bool:
        return frozen_state_digest(self.vit, set(self.target_names)) == self.frozen_digest

    def counts(self) -> dict:
        trainable = sum(p.numel() for p in self.target_params())
        total = sum(p.numel() for p in self.vit.parameters())
        own = total - trainable if self.added else total
        return {"target_params": trainable, "backbone_params": own,
                "target_percent": round(100 * trainable / max(1, own), 4)}


def build_run_model(ctx: Context, seed: int, init: Path | None = None) -> RunModel:
    """Backbone copy + target parameters, initialised from ``seed`` (or loaded from ``init``)."""
    vit = ctx.backbone.fresh_model()
    method = get_target_method(ctx.cfg.peft)
    torch.manual_seed(stream_seed(seed, "targets"))
    handle, names = method.attach(vit)
    vit.to(ctx.device)
    if init is not None:
        method.load(handle, init)
    digest = frozen_state_digest(vit, set(names))
    return RunModel(vit, method, handle, names, digest)


@torch.no_grad()
def pretext_eval_loss(ctx: Context, task: nn.Module, seed: int) -> float:
    """Pretext loss on the validation images with fixed masks and no augmentation (start/end comparable)."""
    task.eval()
    gen = generator(seed, "pretext_eval", ctx.device)
    n = len(ctx.data["val"])
    total = 0.0
    for idx in iterate_batches(n, ctx.cfg.eval_batch_size):
        total += float(task.loss(ctx.batch("val", idx), gen)) * len(idx)
    task.train()
    return total / n


def pretrain_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str) -> dict:
    """TPP: train the target parameters with the pretext objective; save them; drop the pretext head."""
    cfg = ctx.cfg.pretext
    task = get_pretext(cfg)(ctx.backbone, run.vit, cfg).to(ctx.device)
    loss_start = pretext_eval_loss(ctx, task, seed)
    ctx.log(f"{tag} TPP stage: {cfg.method} ({getattr(task, 'decoder_source', '')} decoder), "
            f"held-out pretext loss {loss_start:.4f}")
    order = generator(seed, "pretext")
    aug = generator(seed, "pretext", ctx.device)
    metrics_path = out_dir / "metrics.jsonl"

    def on_epoch_end(epoch: int, loss: float) -> dict:
        append_jsonl(metrics_path, {"stage": "pretext", "epoch": epoch, "train_loss": loss})
        return {}

    result = train(
        run.target_params() + task.head_param_groups(cfg.lr),
        lambda idx: task.loss(ctx.batch("train", idx, aug), aug),
        len(ctx.data["train"]), epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, generator=order,
        on_epoch_end=on_epoch_end, log=ctx.log, tag=f"{tag} pretext",
    )
    loss_end = pretext_eval_loss(ctx, task, seed)
    if not loss_end < loss_start * (1 - MIN_PRETEXT_GAIN):
        ctx.log(f"{tag} WARNING: the TPP stage lowered the held-out pretext loss by less than "
                f"{MIN_PRETEXT_GAIN:.0%} ({loss_start:.4f} -> {loss_end:.4f}): it has barely pre-trained anything")
    target_dir = out_dir / "target_params"
    run.method.save(run.handle, target_dir)
    ctx.log(f"{tag} TPP stage done: held-out pretext loss {loss_start:.5f} -> {loss_end:.5f} "
            f"({result.seconds:.0f}s); target parameters in {target_dir}")
    summary = {"method": cfg.method, "decoder": getattr(task, "decoder_source", None),
               "loss_start": loss_start, "loss_end": loss_end,
               "train_loss_curve": [h["train_loss"] for h in result.history],
               "epochs": cfg.epochs, "steps": result.steps, "seconds": result.seconds}
    append_jsonl(metrics_path, {"stage": "pretext", "event": "end", **summary})
    return summary  # the pretext head goes out of scope here; only the target parameters remain


@torch.no_grad()
def predict(ctx: Context, model: Classifier, split: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Scores, labels and mean loss of ``split`` (no augmentation, no gradients)."""
    model.eval()
    scores, loss_sum = [], 0.0
    labels = ctx.data[split].labels
    for idx in iterate_batches(len(labels), ctx.cfg.eval_batch_size):
        logits = model(ctx.batch(split, idx))
        loss_sum += float(classification_loss(logits, labels[idx.to(ctx.device)], ctx.data.task)) * len(idx)
        scores.append(scores_from_logits(logits, ctx.data.task).float().cpu())
    model.train()
    return torch.cat(scores).numpy(), labels.cpu().numpy(), loss_sum / len(labels)


def evaluate(ctx: Context, model: Classifier, split: str) -> dict[str, float]:
    scores, labels, loss = predict(ctx, model, split)
    return {**classification_metrics(labels, scores, ctx.data.task), "loss": loss}


def finetune_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str,
                   epochs: int | None = None) -> dict:
    """Fine-tune target parameters + a new head; pick the best validation epoch; test it."""
    cfg = ctx.cfg.finetune
    epochs = epochs or cfg.epochs
    torch.manual_seed(stream_seed(seed, "head"))
    model = Classifier(run.vit, ctx.data.num_classes).to(ctx.device)
    model.train()
    order = generator(seed, "finetune")
    aug = generator(seed, "finetune", ctx.device)
    labels = ctx.data["train"].labels
    trainable = run.target_params() + list(model.head.parameters())
    groups = [{"params": list(model.head.parameters())}]
    if run.target_params():
        groups.insert(0, {"params": run.target_params(), "lr": cfg.lr * run.lr_scale})
    sign = -1.0 if cfg.select_metric == "loss" else 1.0
    best: dict = {"score": -float("inf")}
    metrics_path = out_dir / "metrics.jsonl"

    def on_epoch_end(epoch: int, loss: float) -> dict:
        val = evaluate(ctx, model, "val")
        score = sign * val[cfg.select_metric]
        if score > best["score"]:  # NaN never wins
            best.update(score=score, epoch=epoch, val=val,
                        state=[p.detach().clone() for p in trainable])
        append_jsonl(metrics_path, {"stage": "finetune", "epoch": epoch, "train_loss": loss, "val": val})
        return {f"val_{k}": v for k, v in val.items()}

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        logits = model(ctx.batch("train", idx, aug))
        return classification_loss(logits, labels[idx.to(ctx.device)], ctx.data.task, cfg.label_smoothing)

    result = train(
        groups, step_loss, len(labels), epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, generator=order,
        on_epoch_end=on_epoch_end, log=ctx.log, tag=f"{tag} finetune",
    )
    if "state" not in best:
        raise RuntimeError(f"{tag}: no epoch gave a finite validation {cfg.select_metric}")
    with torch.no_grad():
        for p, saved in zip(trainable, best.pop("state"), strict=True):
            p.copy_(saved)
    test = evaluate(ctx, model, "test")
    final_dir = out_dir / "finetuned"
    final_dir.mkdir(parents=True, exist_ok=True)
    if run.method is not None:  # a linear probe has no target parameters; full fine-tuning keeps no weights
        run.method.save(run.handle, final_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
              str(final_dir / "head.safetensors"))
    record = {"stage": "finetune", "event": "end", "best_epoch": best["epoch"], "val": best["val"],
              "test": test, "epochs": epochs, "steps": result.steps, "seconds": result.seconds}
    append_jsonl(metrics_path, record)
    ctx.log(f"{tag} test " + " ".join(f"{k} {v:.4f}" for k, v in test.items())
            + f" (best val epoch {best['epoch']}, {result.seconds:.0f}s)")
    return record


def timed(fn: Callable[[], dict]) -> tuple[dict, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
