"""Pre-train a whole ViT from random weights with MAE on an unlabelled image pool (``tppeft backbone-pretrain``).

For modalities without a suitable foundation model, and to make leave-one-dataset-out backbones that have
never seen the downstream data. The objective is the TPP stage's own MAE (:class:`MaskedReconstruction` with a
fresh, trained decoder); here every encoder weight trains too. The keys it shares with the rest of tppeft
are read where they live: the mask and the decoder from ``pretext`` (``mask_ratio``, ``norm_pix_loss``,
``decoder_dim``, ``decoder_depth``, ``decoder_heads``), the crop and flips from ``data`` (``crop_scale``,
``hflip``, ``vflip``), the autocast precision from ``train.precision``. The result is a checkpoint in the layout
:func:`tppeft.backbones.build_backbone` reads (that of the bundled b0): ``<name>_encoder.safetensors``,
``<name>_decoder.safetensors`` and ``<name>_meta.json``, the metadata saying exactly which files and splits
were seen; ``<name>_pool_keys.bin`` holds a key per pool image (:mod:`tppeft.data.overlap`), so that a run can
count which of its images the backbone saw, pixel for pixel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from timm.models.vision_transformer import VisionTransformer
from timm.optim import param_groups_weight_decay

import tppeft
from tppeft.backbone_pretrain.config import BackbonePretrainConfig
from tppeft.backbones.factory import Backbone, BackboneError, _create
from tppeft.data import augment_batch, to_model_input
from tppeft.data.config import DataConfig
from tppeft.data.overlap import KEY_BYTES, image_keys, keys_bytes
from tppeft.data.pool import load_pool
from tppeft.engine import arithmetic, resolve_device, set_threads, train
from tppeft.engine.checkpoint import Checkpointer, config_match
from tppeft.engine.config import CheckpointConfig, TrainConfig
from tppeft.engine.devices import autocast, autocast_dtype
from tppeft.engine.loop import epoch_steps
from tppeft.io import append_jsonl, atomic_write_bytes, save_tensors, write_json
from tppeft.pretext.config import PretextConfig
from tppeft.pretext.mae.task import MaskedReconstruction
from tppeft.revision import source_revision
from tppeft.rundir import RunPaths

MEAN = STD = (0.5, 0.5, 0.5)  # b0's convention: (x - 0.5) / 0.5 on [0, 1] pixels
_NO_DECAY = ("vit.pos_embed", "vit.cls_token", "vit.reg_token", "decoder.dec_pos", "decoder.mask_token")


class PretrainSettings(Protocol):
    """What backbone pre-training reads of the configuration (``tppeft.config.Config`` has it)."""

    device: str
    threads: int | None
    backbone_pretrain: BackbonePretrainConfig
    pretext: PretextConfig
    data: DataConfig
    train: TrainConfig
    checkpoint: CheckpointConfig

    def model_dump(self, **kwargs) -> dict: ...


STAGE = "backbone_pretrain"


def _write_pool_keys(pool: torch.Tensor, size: int, out_dir: Path, name: str) -> dict:
    """``<name>_pool_keys.bin``: a key per pool image (:mod:`tppeft.data.overlap`), so that a run can tell which of
    its images the backbone saw; returns the metadata's ``pool_keys`` entry."""
    keys = keys_bytes(image_keys(pool, size))
    atomic_write_bytes(out_dir / f"{name}_pool_keys.bin", keys)
    return {"file": f"{name}_pool_keys.bin", "image_size": size, "images": len(keys) // KEY_BYTES}


def _finished(cfg: PretrainSettings, out_dir: Path, log: Callable[[str], None]) -> dict | None:
    """The metadata of a backbone already made in ``out_dir`` (None if there is none), with the pool keys added
    when it was made before they were written: the recipe's pool is read again and must be, file by file, the
    one the backbone was trained on (SHA-256 and image counts)."""
    bp = cfg.backbone_pretrain
    meta_path = out_dir / f"{bp.checkpoint_name}_meta.json"
    if not meta_path.is_file() or not (out_dir / f"{bp.checkpoint_name}_encoder.safetensors").is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if (keys := meta.get("pool_keys")) and (out_dir / keys["file"]).is_file():
        log(f"backbone-pretrain: already finished ({meta_path}); nothing to do")
        return meta
    size = meta["arch_kwargs"]["img_size"]
    pool, sources = load_pool(bp.sources, size, bp.data_root, log)
    made = [(s.get("file"), s.get("sha256"), s.get("splits")) for s in meta.get("sources", [])]
    if made != [(s["file"], s["sha256"], s["splits"]) for s in sources]:
        raise BackboneError(f"{out_dir}: the recipe's pool is not the one the backbone was trained on (its "
                            f"{meta_path.name} lists {[m[0] for m in made]} with other checksums or counts); "
                            "restore those files (backbone_pretrain.data_root) to key its images")
    meta["pool_keys"] = _write_pool_keys(pool, size, out_dir, bp.checkpoint_name)
    write_json(meta_path, meta)
    log(f"backbone-pretrain: already finished; wrote the keys of its {meta['pool_keys']['images']:,} pool images "
        f"({meta['pool_keys']['file']}), so that runs can count which of their images it saw")
    return meta


def pretrain_backbone(cfg: PretrainSettings, out_dir: Path, log: Callable[[str], None] = print,
                      resume: bool = False) -> dict:
    """Train ``cfg.backbone_pretrain`` and write the checkpoint into ``out_dir``; returns its metadata.

    Checkpoints go to ``out_dir/checkpoints/backbone_pretrain`` every ``checkpoint.every_epochs`` epochs (and on
    SIGINT/SIGTERM); with ``resume`` training continues from the newest one, to the same result. Resuming a
    finished backbone trains nothing: it writes the pool keys if the backbone was made without them.
    """
    if resume and (meta := _finished(cfg, out_dir, log)) is not None:
        return meta
    bp, data = cfg.backbone_pretrain, cfg.data
    device = resolve_device(cfg.device)
    threads = set_threads(cfg.threads) if device.type == "cpu" else None
    torch.manual_seed(bp.seed)
    vit = _create(bp.name, False, **bp.arch_kwargs)
    if not isinstance(vit, VisionTransformer) or vit.cls_token is None or vit.pos_embed is None:
        raise BackboneError(f"backbone_pretrain.name '{bp.name}' is not a timm VisionTransformer with a class token "
                            "and absolute position embedding")
    size, patch = vit.patch_embed.img_size[0], vit.patch_embed.patch_size[0]
    pool, sources = load_pool(bp.sources, size, bp.data_root, log)
    pool = pool.to(device)
    backbone = Backbone(model=vit, mean=MEAN, std=STD, image_size=size, patch_size=patch, identity={})
    pcfg = cfg.pretext.model_copy(update={"method": "mae", "decoder": "fresh", "train_decoder": True})
    task = MaskedReconstruction(backbone, vit, pcfg).to(device)
    task.requires_grad_(True)
    task.train()
    lr = bp.base_lr * bp.batch_size / 256
    groups = param_groups_weight_decay(task, bp.weight_decay, no_weight_decay_list=_NO_DECAY)
    steps_per_epoch, _ = epoch_steps(len(pool), bp.batch_size)
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    aug = torch.Generator(device=device).manual_seed(bp.seed + 1)
    precision = autocast(device, autocast_dtype(cfg.train.precision, device))
    n_params = sum(p.numel() for p in vit.parameters())
    log(f"backbone-pretrain: {bp.name} {dict(bp.arch_kwargs)} ({n_params:,} parameters, random init) on "
        f"{len(pool):,} images at {size}px; {bp.epochs} epochs x {steps_per_epoch} steps of {bp.batch_size}, "
        f"peak lr {lr:.2e}; device {device}" + (f" ({threads} threads)" if threads else ""))
    paths = RunPaths(out_dir)
    ckpts = Checkpointer(paths.checkpoints(STAGE), **config_match(cfg, STAGE),
                         every_epochs=cfg.checkpoint.every_epochs, every_steps=cfg.checkpoint.every_steps,
                         logs=[paths.metrics], log=log)
    resumed = ckpts.resume() if resume else None
    curve: list[list[float]] = list(ckpts.meta.get("curve", []))

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        images = augment_batch(pool[idx.to(device)], aug, data.crop_scale, hflip=data.hflip, vflip=data.vflip)
        with precision:
            return task.loss(to_model_input(images, mean, std), aug).float()

    def on_epoch_end(epoch: int, loss: float) -> dict:
        curve.append([epoch * steps_per_epoch, round(loss, 5)])
        ckpts.meta["curve"] = curve
        append_jsonl(paths.metrics, {"stage": STAGE, "epoch": epoch, "step": epoch * steps_per_epoch,
                                     "train_loss": loss})
        return {}

    result = train(groups, step_loss, len(pool), epochs=bp.epochs, batch_size=bp.batch_size, lr=lr,
                   weight_decay=bp.weight_decay, warmup_epochs=bp.warmup_fraction * bp.epochs,
                   generator=torch.Generator().manual_seed(bp.seed), betas=tuple(bp.betas),
                   on_epoch_end=on_epoch_end, log=log, tag="[backbone-pretrain]", generators={"augment": aug},
                   checkpoints=ckpts, resume=resumed)
    seconds = result.seconds
    dtype = torch.float16 if bp.save_dtype == "float16" else torch.float32
    stem = out_dir / bp.checkpoint_name
    save_tensors({k: v.detach().to("cpu", dtype).contiguous() for k, v in vit.state_dict().items()},
                 f"{stem}_encoder.safetensors")
    save_tensors({k: v.detach().to("cpu", dtype).contiguous() for k, v in task.decoder.state_dict().items()},
                 f"{stem}_decoder.safetensors")
    arch = {"img_size": size, "patch_size": patch, "embed_dim": vit.embed_dim, "depth": len(vit.blocks),
            "num_heads": vit.blocks[0].attn.num_heads, "in_chans": vit.patch_embed.proj.in_channels,
            **bp.arch_kwargs}
    meta = {
        "arch": "timm.models.vision_transformer.VisionTransformer", "timm_name": bp.name, "arch_kwargs": arch,
        "decoder": {"dim": pcfg.decoder_dim, "depth": pcfg.decoder_depth,
                    "heads": task.decoder.dec_blocks[0].attn.num_heads, "mask_ratio": pcfg.mask_ratio,
                    "norm_pix_loss": pcfg.norm_pix_loss,
                    "keys": "dec_embed, mask_token, dec_pos, dec_blocks.*, dec_norm, dec_pred"},
        "input": "grayscale replicated to 3 channels, x in [0,1] normalised as (x-0.5)/0.5",
        "mean": list(MEAN), "std": list(STD),
        "sources": sources, "images": len(pool), "batch": bp.batch_size, "steps": result.steps,
        "epochs": bp.epochs, "peak_lr": lr, "weight_decay": bp.weight_decay, "betas": list(bp.betas),
        "mask_ratio": pcfg.mask_ratio, "crop_scale": list(data.crop_scale), "seed": bp.seed,
        "loss_curve": curve, "final_loss": curve[-1][1] if curve else None, "seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)",
        "save_dtype": bp.save_dtype, "tppeft_version": tppeft.__version__, "revision": source_revision(),
        "arithmetic": arithmetic(device),  # the same file again needs the same processor (or GPU) and torch
    }
    meta["pool_keys"] = _write_pool_keys(pool, size, out_dir, bp.checkpoint_name)
    write_json(Path(f"{stem}_meta.json"), meta)
    log(f"backbone-pretrain done: loss {curve[0][1]:.4f} -> {curve[-1][1]:.4f} in {seconds:.0f}s; "
        f"checkpoint {stem}_encoder.safetensors")
    return meta
