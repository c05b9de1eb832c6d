"""What every run of one experiment shares: the configuration, data on the device, the task and the frozen
backbone (:class:`Context`), and how it is prepared from a configuration."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from tppeft import distributed
from tppeft.backbones import Backbone, build_backbone, frozen_state_digest
from tppeft.bundled import resolve
from tppeft.config import Config, PretextConfig
from tppeft.data import ImageDataset, augment_batch, data_from_config, input_pixels, to_model_input
from tppeft.data.fewshot import labelled_subset
from tppeft.data.overlap import MAX_PAIRS, NEAR, count_in, found_in, image_keys, keys_from_bytes, nearest, thumbnails
from tppeft.data.pool import load_pool
from tppeft.engine import resolve_device, set_deterministic, set_threads
from tppeft.engine.devices import autocast, autocast_dtype
from tppeft.engine.loop import epoch_steps
from tppeft.experiment.seeds import stream_seed
from tppeft.io import file_sha256, tensors_sha256
from tppeft.options import ConfigError
from tppeft.tasks import Task, task_for
from tppeft.tracking import check_available

# Parts of the test split each run also scores where the data holds both kinds (the run record's key -> the name the
# summary gives it): images without a near-twin in training, and images the backbone's pre-training pool did not hold.
TEST_PARTS = {"test_without_twin": "without_twin", "test_unseen_by_backbone": "unseen_by_backbone"}


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
    pretext_extra: torch.Tensor | None = None  # pretext.data: more unlabelled (M, C, S, S) images, TPP stage only
    pretext_sources: list[dict] = field(default_factory=list)  # what pretext.data read
    _labelled: dict[int, torch.Tensor | None] = field(default_factory=dict, repr=False)
    _keys: dict[str, list[bytes | None]] | None = field(default=None, repr=False)

    def split_keys(self) -> dict[str, list[bytes | None]]:
        """Per split, a key per image as the model sees it (:func:`tppeft.data.overlap.image_keys`), made once."""
        if self._keys is None:
            self._keys = split_keys(self.data, self.task)
        return self._keys

    def image_pairs(self) -> int | None:
        """How many pairs of images from two different splits there are to compare for near-twins; None for whole
        volumes (near-twins are looked for between 2D images and slices)."""
        images = [self.task.pretext_images(split) for split in self.data.splits.values()]
        if any(x[:1].dim() != 4 for x in images):  # whole volumes (slices index like images)
            return None
        sizes = [len(x) for x in images]
        return sum(a * b for i, a in enumerate(sizes) for b in sizes[:i])

    @cached_property
    def split_thumbnails(self) -> dict[str, torch.Tensor] | None:
        """Per split, the images' near-twin thumbnails (:func:`tppeft.data.overlap.thumbnails`), made once; None
        for whole volumes or more than ``MAX_PAIRS`` :meth:`image_pairs`."""
        if (pairs := self.image_pairs()) is None or pairs > MAX_PAIRS:
            return None
        return {name: thumbnails(self.task.pretext_images(split)) for name, split in self.data.splits.items()}

    @cached_property
    def test_without_twin(self) -> np.ndarray | None:
        """Which test images have no near-twin among the training images (correlation below
        :data:`tppeft.data.overlap.NEAR`): test images whose twin neither the TPP stage nor fine-tuning could have seen,
        as far as that criterion finds. None where near-twins are not looked for (:attr:`split_thumbnails`) or where
        every test image or none is without one (the subset would be the whole split or empty)."""
        if (thumbs := self.split_thumbnails) is None:
            return None
        return _part((nearest(thumbs["test"], thumbs["train"]) < NEAR).numpy())

    def test_parts(self) -> dict[str, np.ndarray]:
        """:data:`TEST_PARTS`' masks over the test split (each the property of its name), those this run's data has."""
        masks = {part: getattr(self, part) for part in TEST_PARTS}
        return {part: mask for part, mask in masks.items() if mask is not None}

    @cached_property
    def backbone_pool(self) -> set[bytes] | None:
        """The keys of the images the backbone was pre-trained on (:attr:`Backbone.pool_keys`), where its keys file
        is there and keys images at the size this run reads them; else None."""
        path, made = self.backbone.pool_keys, self.backbone.identity.get("pool_keys") or {}
        if path is None or not path.is_file() or any(s.size != made.get("image_size")
                                                     for s in self.data.splits.values()):
            return None
        return keys_from_bytes(path.read_bytes())

    @cached_property
    def test_unseen_by_backbone(self) -> np.ndarray | None:
        """Which test images the backbone's pre-training pool did not hold (:attr:`backbone_pool`): a gain on a
        backbone that saw some test images, unlabelled, can then be read on those it did not. None without its
        keys, or where every test image or none was in the pool."""
        if (pool := self.backbone_pool) is None:
            return None
        return _part(~np.array(found_in(self.split_keys()["test"], pool), dtype=bool))

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

    @property
    def single_label(self) -> bool:
        """Single-label classification of 2D images: what the stratified label subset and the probe need."""
        return self.task.name == "classification" and self.data["train"].labels.dim() == 1

    def labelled(self, seed: int) -> torch.Tensor | None:
        """Indices of the training items fine-tuning sees in run ``seed`` (``data.label_fraction`` /
        ``data.labels_per_class``), the same in every arm; None = all of them (the neutral setting)."""
        if seed not in self._labelled:
            d, train = self.cfg.data, self.data["train"]
            stratify = self.single_label or (self.task.name == "volume" and train.labels.dim() == 1)
            labels = train.labels.cpu().numpy() if stratify else np.zeros(len(train))
            if d.labels_per_class is not None and not stratify:
                raise ConfigError("data.labels_per_class needs single-label classification; use data.label_fraction")
            groups = train.label_groups().cpu().numpy() if hasattr(train, "label_groups") else None
            chosen = labelled_subset(labels, d.label_fraction, d.labels_per_class, stream_seed(seed, "labels"),
                                     stratify, groups)
            self._labelled[seed] = None if chosen is None else torch.from_numpy(chosen)
        return self._labelled[seed]

    def num_labelled(self, seed: int = 0) -> int:
        """How many training items fine-tuning sees in run ``seed`` (the same count for every seed but where whole
        volumes are drawn: their slices differ in number)."""
        chosen = self.labelled(seed)
        return len(self.data["train"]) if chosen is None else len(chosen)

    def labelled_volumes(self) -> int | None:
        """With few labels drawn a volume at a time (slice-wise 3D segmentation): how many volumes; else None."""
        train, chosen = self.data["train"], self.labelled(0)
        if chosen is None or not hasattr(train, "label_groups"):
            return None
        return len(torch.unique(train.label_groups()[chosen.to(train.rows.device)]))

    def num_pretext_images(self) -> int:
        """How many 2D images an epoch of the TPP stage covers: the training split's and ``pretext.data``'s."""
        extra = 0 if self.pretext_extra is None else len(self.pretext_extra)
        return self.num_images("train") + extra

    @cached_property
    def stage_images_sha256(self) -> str:
        """SHA-256 of the images a TPP stage trains on, in its order: the training split's and ``pretext.data``'s;
        not their labels or where they were read from, so a stage serves any labelling of the same images. Read
        once per context (the check before the runs, the stage's import and its record all ask)."""
        h = hashlib.sha256()
        sources = [("train", self.task.pretext_images(self.data["train"]))]
        if self.pretext_extra is not None:
            sources.append(("pretext_data", self.pretext_extra))
        for name, images in sources:  # in chunks: slice-wise 3D segmentation gives a view, indexed, not held whole
            for start in range(0, len(images), 1024):
                tensors_sha256({name: images[torch.arange(start, min(start + 1024, len(images)))]}, h)
        return h.hexdigest()

    def stage_config(self, pretext: PretextConfig | None = None) -> PretextConfig:
        """``pretext`` (default the config's) with its lengths in epochs over this run's TPP-stage images: the
        ``*steps`` keys turned into epochs (:meth:`PretextConfig.in_epochs`)."""
        cfg = pretext or self.cfg.pretext
        return cfg.in_epochs(epoch_steps(self.num_pretext_images(), cfg.batch_size)[0])

    def pretext_batch(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Normalised images ``idx`` of the TPP stage's pool: the training split's pretext images first, then
        ``pretext.data``'s; augmented when a generator is given. Never labels."""
        if self.pretext_extra is None:
            return self.batch("train", idx, gen)
        n = self.num_images("train")
        idx = idx.to(self.device)
        own, extra = idx < n, idx >= n
        data = self.data["train"]
        extra_images = self.pretext_extra[idx[extra] - n]
        own_images = (input_pixels(self.task.pretext_images(data)[idx[own]], data.size) if own.any()
                      else extra_images.new_empty(0, data.images.shape[-3], *extra_images.shape[-2:]))
        channels = max(own_images.shape[1], extra_images.shape[1])
        images = torch.empty(len(idx), channels, *extra_images.shape[-2:], device=self.device)
        images[own] = own_images.expand(-1, channels, -1, -1)
        images[extra] = extra_images.expand(-1, channels, -1, -1)
        if gen is not None:
            images = self.augment(images, gen)
        return self.normalise(images)

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
    check_available(cfg.log)  # log.tensorboard without tensorboard: an error before anything runs
    precision = autocast_dtype(cfg.train.precision, device)
    precision_text = ("bf16 autocast" if precision is not None else "float32") + (
        ", compiled blocks" if cfg.train.compile else "")
    backbone = build_backbone(cfg.backbone, cfg.data.image_size)
    t = cfg.task
    slices, span = (t.slices, t.slice_span) if cfg.backbone.dims == 2 else (None, 1.0)  # a 3D ViT: whole volumes
    data = data_from_config(cfg.data, t.type, slices, span, backbone.image_size, log)
    task = task_for(cfg, data)
    task.select_metric()  # a metric the task lacks is a config error before any training
    task.prepare(data, backbone.image_size)
    backbone.model.to(device)
    shape = "x".join(str(d) for d in data["train"].pixels(torch.arange(1)).shape[1:])
    log(f"data: {data.name} ({task.name}, {data.num_classes} classes) train/val/test = "
        f"{len(data['train'])}/{len(data['val'])}/{len(data['test'])}, input {shape}; "
        f"backbone: {backbone.identity['name']} from {cfg.backbone.checkpoint or 'timm'} at {backbone.image_size}px; "
        f"device {device}" + (f" ({threads} threads)" if threads else "") + f", {precision_text}"
        + (f"; {world} processes, global batches shared between them" if world > 1 else ""))
    keys = split_keys(data, task) if cfg.pretext.data else None  # pretext.data is checked against them
    extra, sources = (None, []) if keys is None else _pretext_extra(cfg, backbone.image_size, keys, log)
    return Context(cfg, device, data.to(device), backbone, torch.tensor(backbone.mean, device=device),
                   torch.tensor(backbone.std, device=device), log, task, precision,
                   frozen_state_digest(backbone.model), None if extra is None else extra.to(device), sources,
                   _keys=keys)


def _part(keep: np.ndarray) -> np.ndarray | None:
    """A mask of test images that selects part of the split; None where it selects all or none of them."""
    return keep if 0 < keep.sum() < len(keep) else None


def split_keys(data: ImageDataset, task: Task) -> dict[str, list[bytes | None]]:
    """Per split, a key per image the TPP stage would read, at the model's input size."""
    return {name: image_keys(task.pretext_images(split), split.size) for name, split in data.splits.items()}


def _pretext_extra(cfg: Config, size: int, run_keys: dict[str, list[bytes | None]],
                   log: Callable[[str], None]) -> tuple[torch.Tensor | None, list[dict]]:
    """``pretext.data``: more unlabelled training images for the TPP stage, at the model's input size; refused
    if any is one of the run's validation or test images, pixel for pixel (:mod:`tppeft.data.overlap`)."""
    if cfg.backbone.dims == 3:
        raise ConfigError("pretext.data adds 2D images (central slices of volumes), and a 3D backbone's TPP stage "
                          "sees whole volumes; use it with a 2D backbone (backbone.dims: 2)")
    own = resolve(cfg.data.path)
    own_sha = file_sha256(own) if own.is_file() else None
    images, sources = load_pool(cfg.pretext.data, size, None, lambda line: log(f"pretext.data {line}"),
                                key="pretext.data")
    for src in sources:
        if src["sha256"] == own_sha or resolve(src["path"]).resolve() == own.resolve():
            raise ConfigError(f"pretext.data: {src['path']} is the run's own data ({cfg.data.path}); its "
                              "training images are in the TPP stage already")
    keys, start, keep = image_keys(images), 0, []
    drop = cfg.pretext.drop_train_copies
    for src in sources:
        src_keys, start = keys[start:start + src["images"]], start + src["images"]
        for split in ("val", "test"):
            if leaked := count_in(src_keys, run_keys[split]):
                raise ConfigError(f"pretext.data: {leaked:,} images of {src['path']} are the run's {split} images, "
                                  "pixel for pixel; the TPP stage must never see them: leave them out of that file")
        copies = found_in(src_keys, run_keys["train"])
        keep += [not c for c in copies] if drop else [True] * len(copies)
        if drop and any(copies):
            src["left_out_train_copies"], src["also_in_train"] = sum(copies), 0
            src["images"] -= sum(copies)
            log(f"pretext.data: {sum(copies):,} images of {src['file']} are the run's training images; left out "
                "(pretext.drop_train_copies), so the TPP stage sees each once per epoch")
        else:
            src["also_in_train"] = sum(copies)
            if src["also_in_train"]:
                log(f"pretext.data: {src['also_in_train']:,} images of {src['file']} are also in the run's training "
                    "split (the TPP stage sees them twice per epoch; pretext.drop_train_copies: true leaves them out)")
    images = images[torch.tensor(keep)] if not all(keep) else images
    if not len(images):
        log("pretext.data: every image is one of the run's training images; the TPP stage sees those alone")
        return None, sources
    log(f"pretext.data: {len(images):,} more unlabelled images for the TPP stage only")
    return images, sources
