"""The two stages of one run: TPP (pretext pre-training of target parameters) and fine-tuning.

Both use :func:`tppeft.engine.train`; they differ in objective and trainable set only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from tppeft import distributed
from tppeft.backbones import Backbone, build_backbone, frozen_state_digest
from tppeft.bundled import resolve
from tppeft.config import Config, PretextConfig, results_identity
from tppeft.data import ImageDataset, augment_batch, input_pixels, iterate_batches, load_dataset, to_model_input
from tppeft.engine import resolve_device, set_deterministic, set_threads, train
from tppeft.engine.checkpoint import Checkpoint, Checkpointer, copy_into, fingerprint, prefixed, unprefixed
from tppeft.engine.devices import autocast, autocast_dtype, compile_blocks
from tppeft.engine.loop import NonFiniteLossError
from tppeft.engine.selection import BestSoFar
from tppeft.io import append_jsonl
from tppeft.options import ConfigError
from tppeft.pretext import get_pretext
from tppeft.rundir import RunPaths
from tppeft.targets import Attached, TargetMethod, get_target_method
from tppeft.tasks import Task, TaskModel, task_for

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
    """What every run of one experiment shares: data on the device, the task and the frozen backbone."""

    cfg: Config
    device: torch.device
    data: ImageDataset
    backbone: Backbone
    mean: torch.Tensor
    std: torch.Tensor
    log: Callable[[str], None]
    task: Task
    precision: torch.dtype | None = None  # autocast dtype of forward passes; None = float32
    template_digest: str = ""  # of the shared backbone: no run may change it, whatever it trains

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Evaluation: no autograd at all (``torch.inference_mode``), forward passes at the run's precision."""
        with torch.inference_mode(), autocast(self.device, self.precision):
            yield

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> the backbone's normalised 3-channel input."""
        return to_model_input(images, self.mean, self.std)

    def augment(self, images: torch.Tensor, gen: torch.Generator, masks: torch.Tensor | None = None):
        """Training augmentation of (N, C, H, W) images (and their (N, H, W) masks, moved alike) if enabled."""
        d = self.cfg.data
        if not d.augment:
            return images if masks is None else (images, masks)
        return augment_batch(images, gen, d.crop_scale, hflip=d.hflip, vflip=d.vflip, masks=masks)

    def num_images(self, split: str) -> int:
        """How many 2D images the TPP stage sees in ``split`` (slices, for volumes)."""
        return len(self.task.pretext_images(self.data[split]))

    def batch(self, split: str, idx: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Normalised 2D images ``idx`` of ``split`` as the TPP stage sees them (the task's pretext images:
        the images themselves, or volume slices); augmented when a generator is given. Never labels."""
        data = self.data[split]
        images = input_pixels(self.task.pretext_images(data)[idx.to(self.device)], data.size)
        if gen is not None:
            images = self.augment(images, gen)
        return self.normalise(images)


def prepare_context(cfg: Config, log: Callable[[str], None] = print) -> Context:
    device = resolve_device(cfg.device)
    threads = set_threads(cfg.threads) if device.type == "cpu" else None
    set_deterministic(cfg.train.deterministic)
    world = distributed.world_size()
    for key, size in (("finetune.batch_size", cfg.finetune.batch_size), ("pretext.batch_size", cfg.pretext.batch_size)):
        if size < world:
            raise ConfigError(f"{key} is the global batch, shared by the {world} processes; it needs at least "
                              f"{world} (got {size})")
    precision = autocast_dtype(cfg.train.precision, device)
    precision_text = ("bf16 autocast" if precision is not None else "float32") + (
        ", compiled blocks" if cfg.train.compile else "")
    backbone = build_backbone(cfg.backbone, cfg.data.image_size)
    t = cfg.task
    data = load_dataset(resolve(cfg.data.path), t.type, cfg.data.limit, t.slices, t.slice_span)
    task = task_for(cfg, data)
    task.select_metric()  # a metric the task lacks is a config error before any training
    task.prepare(data, backbone.image_size)
    backbone.model.to(device)
    shape = "x".join(str(d) for d in data["train"].pixels(torch.arange(1)).shape[1:])
    log(f"data: {data.name} ({task.name}, {data.num_classes} classes) train/val/test = "
        f"{len(data['train'])}/{len(data['val'])}/{len(data['test'])}, input {shape}; "
        f"backbone: {cfg.backbone.name} from {cfg.backbone.checkpoint or 'timm'} at {backbone.image_size}px; "
        f"device {device}" + (f" ({threads} threads)" if threads else "") + f", {precision_text}"
        + (f"; {world} processes, global batches shared between them" if world > 1 else ""))
    return Context(cfg, device, data.to(device), backbone, torch.tensor(backbone.mean, device=device),
                   torch.tensor(backbone.std, device=device), log, task, precision,
                   frozen_state_digest(backbone.model))


@dataclass
class RunModel:
    """A fresh copy of the backbone with its trainable set: attached target parameters (``method``), nothing
    (a linear probe: ``method`` None, no names) or the backbone's own weights (``added`` False)."""

    vit: nn.Module
    method: TargetMethod | None
    handle: Attached | None
    target_names: list[str]
    frozen_digest: str
    backbone_params: int  # parameters of the backbone itself (selected ones included, added ones not)
    added: bool = True  # the trainable tensors are new parameters, not the backbone's own
    lr_scale: float = 1.0  # learning-rate factor of the trainable tensors in fine-tuning

    def target_params(self) -> list[nn.Parameter]:
        params = dict(self.vit.named_parameters())
        return [params[n] for n in self.target_names]

    def target_tensors(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.target_names, self.target_params(), strict=True))

    def load_targets(self, tensors: dict[str, torch.Tensor]) -> None:
        copy_into(self.target_params(), [tensors[n] for n in self.target_names])

    def frozen_unchanged(self) -> bool:
        return frozen_state_digest(self.vit, set(self.target_names)) == self.frozen_digest

    def counts(self) -> dict:
        """Target-parameter count and its percentage of the backbone's own parameters."""
        trainable = sum(p.numel() for p in self.target_params())
        return {"target_params": trainable, "backbone_params": self.backbone_params,
                "target_percent": round(100 * trainable / max(1, self.backbone_params), 4)}

    def counts_text(self) -> str:
        c = self.counts()
        if self.method is not None:
            what = f"{self.method.name}: {c['target_params']:,} target parameters"
        else:
            what = "all backbone weights trained" if not self.added else "head only: 0 target parameters"
        return f"{what} ({c['target_percent']:.2f}% of {c['backbone_params']:,} backbone parameters)"


def build_run_model(ctx: Context, seed: int, init: Path | None = None) -> RunModel:
    """Backbone copy + target parameters, initialised from ``seed`` (or loaded from ``init``)."""
    vit = ctx.backbone.fresh_model()
    backbone_params = sum(p.numel() for p in vit.parameters())
    method = get_target_method(ctx.cfg.peft, ctx.backbone.identity)
    torch.manual_seed(stream_seed(seed, "targets"))
    handle, names = method.attach(vit)
    vit.to(ctx.device)
    if init is not None:
        method.load(handle, init)
    digest = frozen_state_digest(vit, set(names))
    return RunModel(vit, method, handle, names, digest, backbone_params)


def preflight(ctx: Context, pretext: bool, init: Path | None = None) -> int:
    """Build one run's model, task head (and pretext task) as the runs will, so that a method, head, pretext
    task or init folder that cannot work fails before any output exists. Returns the trainable parameter count."""
    run = build_run_model(ctx, 0, init)
    count = sum(p.numel() for p in run.target_params())
    count += sum(p.numel() for p in ctx.task.build_model(run.vit).head.parameters())
    if pretext:
        task = get_pretext(ctx.cfg.pretext)(ctx.backbone, run.vit, ctx.cfg.pretext)
        count += sum(p.numel() for g in task.head_param_groups(1.0) for p in g["params"])
        if task.batch_coupled and distributed.world_size() > 1:
            raise ConfigError(f"pretext.method '{task.name}' computes its loss over the whole batch (negatives, "
                              "centring), which a batch shared between processes would change; run it in one "
                              "process per job (see the README, \"Speed and scale\")")
    return count


def stage_checkpointer(ctx: Context, out_dir: Path, stage: str, seed: int) -> Checkpointer:
    """The checkpoints of one stage of one run, in ``out_dir/checkpoints/<stage>``."""
    c = ctx.cfg.checkpoint
    paths = RunPaths(out_dir)
    return Checkpointer(paths.checkpoints(stage), fingerprint(results_identity(ctx.cfg), stage, seed),
                        every_epochs=c.every_epochs, every_steps=c.every_steps, logs=[paths.metrics],
                        log=ctx.log, writes=distributed.is_main())


def resume_stage(ckpts: Checkpointer) -> Checkpoint | None:
    """The stage's last good checkpoint (or None); every process has read it before any writes a new one."""
    resumed = ckpts.resume()
    distributed.barrier()
    return resumed


def pretext_eval_loss(ctx: Context, task: nn.Module, seed: int) -> float:
    """Pretext loss on the validation images with fixed masks and no augmentation (start/end comparable).

    Under torchrun each process scores its share of every batch, with the masks of the whole batch (as in
    training), and the weighted sums are added over processes.
    """
    task.eval()
    gen = generator(seed, "pretext_eval", ctx.device)
    n = ctx.num_images("val")
    total = torch.zeros((), device=ctx.device, dtype=torch.float64)
    world = distributed.world_size()
    with ctx.inference():
        for idx in iterate_batches(n, ctx.cfg.eval_batch_size):
            start, stop = distributed.eval_share(len(idx))
            with distributed.batch_share(start, stop, len(idx)):
                loss = task.loss(ctx.batch("val", idx[start:stop]), gen).double()
            # a batch too small to share is scored whole by every process: each adds its 1/world part
            total += loss * (stop - start if stop - start < len(idx) else len(idx) / world)
    task.train()
    return float(distributed.all_sum(total)) / n


class PretextStep(nn.Module):
    """The TPP stage's step as a module (images -> pretext loss), so that DistributedDataParallel can wrap it."""

    def __init__(self, task: nn.Module):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.task.loss(images, gen)


class PretextBuffers:
    """Checkpoints what a pretext task keeps outside its parameters (an EMA teacher, DINO's centre)."""

    def __init__(self, task: nn.Module, backbone: nn.Module):
        shared = {id(b) for b in backbone.buffers()}
        self.buffers = {n: b for n, b in task.named_buffers() if id(b) not in shared}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {n: b.detach().clone() for n, b in self.buffers.items()}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        with torch.no_grad():
            for n, b in self.buffers.items():
                b.copy_(tensors[n])


def pretrain_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str,
                   pretext: PretextConfig | None = None) -> dict:
    """TPP: train the target parameters with the pretext objective (``pretext``, default the config's); save
    them; drop the pretext head. Resumes from the stage's last good checkpoint in ``out_dir`` when there is one.
    """
    cfg = pretext or ctx.cfg.pretext
    ckpts = stage_checkpointer(ctx, out_dir, "pretext", seed)
    resumed = resume_stage(ckpts)
    if resumed is not None and resumed.done:
        run.load_targets(unprefixed("target.", resumed.tensors))
        ctx.log(f"{tag} TPP stage already done ({resumed.path})")
        return ckpts.meta["summary"]
    task = get_pretext(cfg)(ctx.backbone, run.vit, cfg).to(ctx.device)
    if ctx.cfg.train.compile:
        compile_blocks(task)
    if resumed is None:
        ckpts.meta["loss_start"] = pretext_eval_loss(ctx, task, seed)
    loss_start = ckpts.meta["loss_start"]
    ctx.log(f"{tag} TPP stage: {task.describe()}, held-out pretext loss {loss_start:.4f}")
    order = generator(seed, "pretext")
    aug = generator(seed, "pretext", ctx.device)
    metrics_path = RunPaths(out_dir).metrics

    def on_epoch_end(epoch: int, loss: float) -> dict:
        if distributed.is_main():
            append_jsonl(metrics_path, {"stage": "pretext", "epoch": epoch, "train_loss": loss})
        return {}

    view_gen = None if task.own_views else aug  # a task that makes its own views gets plain images
    step = distributed.wrap_ddp(PretextStep(task))

    result = train(
        run.target_params() + task.head_param_groups(cfg.lr),
        lambda idx: step(ctx.batch("train", idx, view_gen), aug),
        ctx.num_images("train"), epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, generator=order,
        on_epoch_end=on_epoch_end, after_step=task.after_step, log=ctx.log, tag=f"{tag} pretext",
        generators={"augment": aug}, checkpoints=ckpts, resume=resumed, extra=PretextBuffers(task, run.vit),
        on_nonfinite=ctx.cfg.train.on_nonfinite, precision=ctx.precision,
    )
    loss_end = pretext_eval_loss(ctx, task, seed)
    if not loss_end < loss_start * (1 - MIN_PRETEXT_GAIN):
        ctx.log(f"{tag} WARNING: the TPP stage lowered the held-out pretext loss by less than "
                f"{MIN_PRETEXT_GAIN:.0%} ({loss_start:.4f} -> {loss_end:.4f}): it has barely pre-trained anything")
    target_dir = RunPaths(out_dir).target_params
    if distributed.is_main():
        run.method.save(run.handle, target_dir)
    ctx.log(f"{tag} TPP stage done: held-out pretext loss {loss_start:.5f} -> {loss_end:.5f} "
            f"({result.seconds:.0f}s); target parameters in {target_dir}")
    summary = {"method": cfg.method, "setup": task.describe(), "decoder": getattr(task, "decoder_source", None),
               "loss_start": loss_start, "loss_end": loss_end,
               "train_loss_curve": [h["train_loss"] for h in result.history],
               "epochs": cfg.epochs, "steps": result.steps, "skipped_steps": result.skipped_steps,
               "seconds": result.seconds}
    if distributed.is_main():
        append_jsonl(metrics_path, {"stage": "pretext", "event": "end", **summary})
    ckpts.meta["summary"] = summary
    ckpts.save(prefixed("target.", run.target_tensors()), {}, done=True)
    return summary  # the pretext head goes out of scope here; only the target parameters remain


def finetune_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str,
                   epochs: int | None = None) -> dict:
    """Fine-tune target parameters + the task's new head; pick the best validation epoch; test it.

    Resumes from the stage's last good checkpoint in ``out_dir`` when there is one.
    """
    cfg = ctx.cfg.finetune
    task = ctx.task
    epochs = epochs or cfg.epochs
    select = task.select_metric()
    ckpts = stage_checkpointer(ctx, out_dir, "finetune", seed)
    resumed = resume_stage(ckpts)
    if resumed is not None and resumed.done:
        run.load_targets(unprefixed("target.", resumed.tensors))
        ctx.log(f"{tag} fine-tuning already done ({resumed.path})")
        return ckpts.meta["record"]
    torch.manual_seed(stream_seed(seed, "head"))
    model: TaskModel = task.build_model(run.vit).to(ctx.device)
    model.train()
    if ctx.cfg.train.compile:
        compile_blocks(model)
    forward = distributed.wrap_ddp(model)
    order = generator(seed, "finetune")
    aug = generator(seed, "finetune", ctx.device)
    targets, head = run.target_params(), list(model.head.parameters())
    groups = [{"params": head}]
    if targets:  # a linear probe has none
        groups.insert(0, {"params": targets, "lr": cfg.lr * run.lr_scale})
    sign = -1.0 if select == "loss" else 1.0
    best = BestSoFar(targets + head)
    metrics_path = RunPaths(out_dir).metrics

    def on_epoch_end(epoch: int, loss: float) -> dict:
        with ctx.inference():
            val = task.evaluate(ctx, model, "val")
        best.update(sign * val[select], epoch, val)
        if distributed.is_main():
            append_jsonl(metrics_path, {"stage": "finetune", "epoch": epoch, "train_loss": loss, "val": val})
        return {f"val_{k}": v for k, v in val.items()}

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        inputs, targets = task.train_batch(ctx, idx, aug)
        return task.loss(forward(inputs), targets)

    result = train(
        groups, step_loss, len(ctx.data["train"]), epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, generator=order,
        on_epoch_end=on_epoch_end, log=ctx.log, tag=f"{tag} finetune", generators={"augment": aug},
        checkpoints=ckpts, resume=resumed, extra=best, on_nonfinite=ctx.cfg.train.on_nonfinite,
        precision=ctx.precision,
    )
    if best.epoch is None:
        raise NonFiniteLossError(f"{tag}: no epoch gave a finite validation {select}")
    best.restore()
    with ctx.inference():
        test = task.evaluate(ctx, model, "test")
    final_dir = RunPaths(out_dir).finetuned
    if distributed.is_main():
        with ctx.inference():
            task.after_test(ctx, model, out_dir, seed)
        final_dir.mkdir(parents=True, exist_ok=True)
        if run.method is not None:  # a linear probe has no target parameters; full fine-tuning keeps no weights
            run.method.save(run.handle, final_dir)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
                  str(RunPaths(out_dir).head))
    record = {"stage": "finetune", "event": "end", "best_epoch": best.epoch, "val": best.val,
              "test": test, "epochs": epochs, "steps": result.steps, "skipped_steps": result.skipped_steps,
              "seconds": result.seconds}
    if distributed.is_main():
        append_jsonl(metrics_path, record)
    ckpts.meta["record"] = record
    ckpts.save({**prefixed("target.", run.target_tensors()), **prefixed("head.", model.head.state_dict())}, {},
               done=True)
    ctx.log(f"{tag} test " + " ".join(f"{k} {v:.4f}" for k, v in test.items())
            + f" (best val epoch {best.epoch}, {result.seconds:.0f}s)")
    return record


def timed(fn: Callable[[], dict]) -> tuple[dict, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def evaluate(ctx: Context, model: nn.Module, split: str) -> dict[str, float]:
    """Metrics (and loss) of ``split`` by the experiment's task."""
    with ctx.inference():
        return ctx.task.evaluate(ctx, model, split)
