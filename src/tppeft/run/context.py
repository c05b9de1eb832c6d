"""What every run of one experiment shares: the configuration, data on the device, the task and the frozen
backbone (:class:`Context`), and how it is prepared from a configuration."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from tppeft import distributed
from tppeft.backbones import Backbone, build_backbone, frozen_state_digest
from tppeft.bundled import resolve
from tppeft.config import Config
from tppeft.data import ImageDataset, augment_batch, input_pixels, load_dataset, to_model_input
from tppeft.engine import resolve_device, set_deterministic, set_threads
from tppeft.engine.devices import autocast, autocast_dtype
from tppeft.options import ConfigError
from tppeft.tasks import Task, task_for


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

    def augment(self, images: torch.Tensor, gen: torch.Generator,
                masks: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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
    slices, span = (t.slices, t.slice_span) if cfg.backbone.dims == 2 else (None, 1.0)  # a 3D ViT: whole volumes
    data = load_dataset(resolve(cfg.data.path), t.type, cfg.data.limit, slices, span, cfg.data.volume)
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

