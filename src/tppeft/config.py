"""Typed experiment configuration: one YAML file per experiment plus ``--set key=value`` overrides.

Every field carries a ``description``: it is the documentation (``tppeft config --docs`` prints it).
Unknown keys and wrong types are errors, raised as :class:`ConfigError` with the offending key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined

from tppeft.options import ConfigError, Section, check_area_range


class DataConfig(Section):
    path: str = Field(
        "bundled:breastmnist",
        description="MedMNIST-format .npz (2D images or 3D volumes), a segmentation .npz (`images`, `masks`, "
        "`split`), a folder of image/mask pairs, or `bundled:breastmnist`; relative paths from the working folder.",
    )
    image_size: int | None = Field(
        None, gt=0, description="Input side in pixels; null = the backbone's own input size."
    )
    augment: bool = Field(
        True, description="Random resized crop and flips on training batches (masks and volume slices move with "
        "their image).")
    crop_scale: tuple[float, float] = Field(
        (0.6, 1.0), description="Area range of the random resized crop, as fractions of the image."
    )
    hflip: bool = Field(True, description="Random horizontal flip during training.")
    vflip: bool = Field(False, description="Random vertical flip during training.")
    limit: int | None = Field(
        None, gt=0, description="Use only N images of each split, evenly spaced through it (quick checks); null = all."
    )

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)


class BackboneConfig(Section):
    name: str = Field("vit_tiny_patch16_224", description="timm model name of a VisionTransformer.")
    checkpoint: str | None = Field(
        "bundled:b0",
        description="Local encoder weights (.safetensors, with `<stem>_meta.json` or `meta.json` beside it), "
        "or `bundled:b0`; null = timm's pretrained weights if `pretrained`, else random init.",
    )
    pretrained: bool = Field(
        False, description="Load timm's pretrained weights (needs internet or a local hub cache)."
    )
    mean: tuple[float, float, float] | None = Field(
        None, description="Input normalisation mean; null = from checkpoint metadata or timm's config."
    )
    std: tuple[float, float, float] | None = Field(
        None, description="Input normalisation std; null = from checkpoint metadata or timm's config."
    )


BLOCK_LINEARS = ("qkv", "proj", "fc1", "fc2")
# Readable presets for `peft.targets`: the linears of every transformer block they stand for.
TARGET_PRESETS = {"attention": ["qkv", "proj"], "mlp": ["fc1", "fc2"], "all": list(BLOCK_LINEARS)}
BlockLinear = Literal["qkv", "proj", "fc1", "fc2"]


class LokrOptions(Section):
    """Options of LoKr (peft ``LoKrConfig``) beyond the shared rank and alpha."""

    decompose_both: bool = Field(
        False, description="Also factor the left Kronecker factor into a low-rank product (peft `decompose_both`)."
    )
    decompose_factor: int = Field(
        -1, description="Kronecker factor size; -1 = the factorisation closest to a square (peft `decompose_factor`)."
    )


class Ia3Options(Section):
    """Options of (IA)³ (peft ``IA3Config``)."""

    feedforward: list[BlockLinear] = Field(
        ["fc2"], description="Targeted linears treated as feed-forward: (IA)³ scales their *input* (the MLP "
        "activation), the others' output."
    )


class AdapterOptions(Section):
    """Options of the sequential bottleneck adapter (Houlsby/Pfeiffer style, after the MLP)."""

    dim: int = Field(16, gt=0, description="Bottleneck width of the adapter (down 192 -> dim -> up 192 on b0).")


class AdaptFormerOptions(Section):
    """Options of AdaptFormer, the parallel adapter beside the MLP."""

    dim: int = Field(16, gt=0, description="Bottleneck width of the parallel adapter.")
    scale: float = Field(0.1, gt=0, description="Fixed factor on the adapter branch (AdaptFormer's s).")


class VptOptions(Section):
    """Options of visual prompt tuning (`vpt_shallow`, `vpt_deep`)."""

    tokens: int = Field(10, gt=0, description="Learnable prompt tokens inserted after the class token.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the prompt tokens during training.")


class SsfOptions(Section):
    """Options of SSF (per-channel scale and shift)."""

    norms: bool = Field(
        True, description="Also scale and shift after every LayerNorm (besides the linears in `peft.targets`)."
    )


class PeftConfig(Section):
    method: str = Field("lora", description="Target-parameter method (see `tppeft list`).")
    r: int = Field(8, gt=0, description="Rank of LoRA, LoHa and LoKr.")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator of LoRA, LoHa and LoKr (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (LoHa/LoKr: rank dropout).")
    targets: list[BlockLinear] = Field(
        list(BLOCK_LINEARS), min_length=1,
        description="Linears of every transformer block that receive target parameters (LoRA family, (IA)³, "
        "SSF); presets: `attention` = [qkv, proj], `mlp` = [fc1, fc2], `all`.",
    )
    use_rslora: bool = Field(False, description="LoRA: rank-stabilised scale alpha / sqrt(r) (rsLoRA).")
    use_dora: bool = Field(False, description="LoRA: weight-decomposed LoRA (DoRA), adds a magnitude vector.")
    lokr: LokrOptions = Field(default_factory=LokrOptions)
    ia3: Ia3Options = Field(default_factory=Ia3Options)
    adapter: AdapterOptions = Field(default_factory=AdapterOptions)
    adaptformer: AdaptFormerOptions = Field(default_factory=AdaptFormerOptions)
    vpt: VptOptions = Field(default_factory=VptOptions)
    ssf: SsfOptions = Field(default_factory=SsfOptions)

    @field_validator("targets", mode="before")
    @classmethod
    def _expand_presets(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            return v
        out: list = []
        for item in items:
            for name in TARGET_PRESETS.get(item, [item]) if isinstance(item, str) else [item]:
                if name not in out:
                    out.append(name)
        return out


class ViewsConfig(Section):
    """Batched multi-view transform of the view-based pretext tasks (``dino``, ``simclr``)."""

    global_scale: tuple[float, float] = Field(
        (0.4, 1.0),
        description="`dino`, `simclr`: area range of the global crops (full input size), as fractions of the image.",
    )
    local_scale: tuple[float, float] = Field(
        (0.1, 0.4), description="Area range of the local crops (`dino` only), as fractions of the image."
    )
    local_crops: int = Field(4, ge=0, description="Local crops per image (`dino` only; 0 = global crops only).")
    local_size: int = Field(
        32, gt=0, description="Side in pixels of a local crop; a multiple of the patch size (`dino` only)."
    )
    hflip: bool = Field(True, description="`dino`, `simclr`: random horizontal flip of every view.")
    vflip: bool = Field(False, description="`dino`, `simclr`: random vertical flip of every view.")
    brightness: float = Field(
        0.2, ge=0, description="`dino`, `simclr`: brightness jitter, add U(-b, b) to pixels in [0, 1]."
    )
    contrast: float = Field(
        0.2, ge=0, lt=1, description="`dino`, `simclr`: contrast jitter, scale around the image mean by U(1-c, 1+c)."
    )
    gamma: float = Field(0.2, ge=0, description="`dino`, `simclr`: gamma jitter, pixels to the power exp(U(-g, g)).")

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)


class DinoConfig(Section):
    """Self-distillation with an EMA teacher of the target parameters (``pretext.method: dino``)."""

    out_dim: int = Field(1024, gt=1, description="Prototypes (output width) of the DINO head.")
    hidden_dim: int = Field(512, gt=0, description="Hidden width of the DINO head's MLP.")
    bottleneck_dim: int = Field(128, gt=0, description="Bottleneck width before the prototype layer.")
    student_temp: float = Field(0.1, gt=0, description="Softmax temperature of the student.")
    teacher_temp: float = Field(0.04, gt=0, description="Softmax temperature of the teacher (sharpening).")
    center_momentum: float = Field(
        0.9, ge=0, le=1, description="Momentum of the teacher-output centre (centring); 1 = no centring."
    )
    momentum: float = Field(
        0.99, ge=0, le=1,
        description="EMA momentum m of the teacher (target parameters and head): teacher = m*teacher + (1-m)*student "
        "after every step; 1 = a fixed teacher.",
    )


class SimclrConfig(Section):
    """Contrastive learning on two views, NT-Xent loss (``pretext.method: simclr``)."""

    temperature: float = Field(0.2, gt=0, description="Temperature of the NT-Xent loss.")
    hidden_dim: int = Field(512, gt=0, description="Hidden width of the projection head.")
    out_dim: int = Field(128, gt=0, description="Output width of the projection head.")


class FeatDistillConfig(Section):
    """Prediction of the frozen backbone's own features from a masked view (``pretext.method: featdistill``)."""

    tokens: Literal["masked", "all", "cls"] = Field(
        "masked", description="Tokens whose full-image features are predicted: the class token and the masked "
        "patches, the class token and every patch, or the class token only.",
    )
    loss: Literal["mse", "cosine"] = Field(
        "mse", description="`mse` on layer-normalised features, or `cosine` (1 - cosine similarity)."
    )


class PretextConfig(Section):
    method: str = Field("mae", description="Pretext task of the TPP stage (see `tppeft list`).")
    epochs: int = Field(6, ge=0, description="Epochs of the TPP stage over the training images.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW, warm-up then cosine).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(64, gt=0, description="Images per step.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    mask_ratio: float = Field(
        0.5, gt=0, lt=1, description="Fraction of patches masked (`mae`, `simmim`, `featdistill`)."
    )
    norm_pix_loss: bool = Field(
        True, description="Reconstruct per-patch normalised pixels (`mae`, `simmim`)."
    )
    decoder: Literal["auto", "pretrained", "fresh"] = Field(
        "auto",
        description="`mae`: `pretrained` = the checkpoint's MAE decoder (at another input size than the "
        "checkpoint's, its position table resampled as the encoder's is), `fresh` = a new small decoder, "
        "`auto` = pretrained when the checkpoint has one and the input size is the checkpoint's, else fresh.",
    )
    train_decoder: bool | None = Field(
        None, description="`mae`: train the decoder with the target parameters; null = only a fresh decoder."
    )
    decoder_lr_scale: float = Field(
        0.1, gt=0, description="`mae`: learning-rate factor of a trained *pretrained* decoder (a fresh one uses 1)."
    )
    decoder_dim: int = Field(128, gt=0, description="`mae`: width of a fresh decoder.")
    decoder_depth: int = Field(2, gt=0, description="`mae`: transformer blocks of a fresh decoder.")
    decoder_heads: int = Field(4, gt=0, description="`mae`: attention heads of a fresh decoder (divides its width).")
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    dino: DinoConfig = Field(default_factory=DinoConfig)
    simclr: SimclrConfig = Field(default_factory=SimclrConfig)
    featdistill: FeatDistillConfig = Field(default_factory=FeatDistillConfig)

    @model_validator(mode="after")
    def _check_decoder_heads(self) -> PretextConfig:
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        return self


class TaskConfig(Section):
    type: Literal["auto", "classification", "segmentation", "volume"] = Field(
        "auto",
        description="Task of the fine-tuning stage; `auto` = from the data (masks: segmentation, (N,D,H,W) "
        "volumes: volume classification, else classification).",
    )
    decoder_channels: int = Field(
        16, gt=0, description="Segmentation: width of the decoder's full-resolution level (UNETR's "
        "`feature_size`); it doubles at each coarser level.")
    feature_blocks: list[int] | None = Field(
        None, description="Segmentation: transformer blocks (0-based, shallow to deep) whose outputs feed the "
        "decoder, one per upsampling level (log2 of the patch size); null = evenly spaced, ending at the last.")
    dice_weight: float = Field(1.0, ge=0, description="Segmentation: weight of the Dice loss (MONAI DiceCELoss).")
    ce_weight: float = Field(1.0, ge=0, description="Segmentation: weight of the cross-entropy loss.")
    ignore_empty: bool = Field(
        True, description="Segmentation metrics: an image whose ground truth lacks a class is left out of that "
        "class's Dice/IoU (MONAI's default); false = it scores 1 if the prediction lacks it too, else 0.")
    slices: int | None = Field(
        8, gt=0, description="Volumes: slices per volume fed to the 2D backbone, evenly spaced along the first "
        "axis; null = every slice in the span.")
    train_slices: int | None = Field(
        None, gt=0, description="Volumes: slices drawn at random (per volume and step, order kept) from the "
        "`slices` for each training step, a cheaper bag that also augments; null = all. Evaluation uses all.")
    slice_span: float = Field(
        1.0, gt=0, le=1, description="Volumes: central fraction of the depth that the slices are taken from.")
    aggregation: Literal["attention", "mean"] = Field(
        "attention", description="Volumes: how slice features become one volume feature: gated attention "
        "pooling (learned weights) or the mean; a linear classifier follows.")

    @field_validator("feature_blocks")
    @classmethod
    def _check_blocks(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(b < 0 for b in v) or sorted(set(v)) != v):
            raise ValueError("needs distinct block indices >= 0 in increasing order")
        return v


class FinetuneConfig(Section):
    epochs: int = Field(6, gt=0, description="Fine-tuning epochs (identical for every arm).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of target parameters and head.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(32, gt=0, description="Images per step.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    select_metric: Literal["auto", "auc", "acc", "dice", "iou", "loss"] = Field(
        "auto", description="Validation metric that picks the epoch whose weights are tested; `auto` = the "
        "task's primary metric (AUC for classification, Dice for segmentation)."
    )


class TrainConfig(Section):
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN/inf loss or gradient: `stop` the run (its last good checkpoint is kept; the "
        "comparison goes on without it), or `skip` that update and count it in the run's metrics.",
    )
    deterministic: bool = Field(
        False, description="Call torch.use_deterministic_algorithms (on CUDA also sets "
        "CUBLAS_WORKSPACE_CONFIG); slower, and needed for bit-identical resumes on a GPU."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Forward passes (training and evaluation) under bf16 autocast (`bf16`) or in float32 "
        "(`fp32`); weights, optimizer and losses stay float32. `auto` = bf16 on a CUDA GPU that supports it, "
        "fp32 on CPU (where bf16 matrix products are far slower than float32 on most processors)."
    )
    compile: bool = Field(
        False, description="`torch.compile` every transformer block (backbone and MAE decoder), once per run: "
        "pays on a GPU for runs of more than a few hundred steps (the first steps compile, tens of seconds); "
        "on CPU it needs a C++ compiler and rarely pays."
    )


class CheckpointConfig(Section):
    every_epochs: int = Field(
        1, ge=0, description="Checkpoint every N epochs of each stage; 0 = only at stage boundaries."
    )
    every_steps: int = Field(
        0, ge=0, description="Also checkpoint every N optimizer steps (0 = off); a resume continues mid-epoch."
    )
    keep_finished: bool = Field(
        False, description="Keep a run's checkpoints once its result is recorded (by default they are deleted; "
        "target parameters and fine-tuned weights always stay)."
    )


class BaselineMatchedConfig(Section):
    extra_epochs: int | None = Field(
        None, ge=0,
        description="Extra fine-tuning epochs of `baseline_matched`; null = the TPP stage's training compute "
        "expressed in fine-tuning epochs (FLOPs of one training step of each stage, counted; rounded up).",
    )


class EvaArmConfig(Section):
    rho: float = Field(
        2.0, ge=1.0, description="`eva`: peft `EvaConfig.rho`; a layer may receive up to r*rho ranks (1 = keep r)."
    )
    tau: float = Field(
        0.99, gt=0, le=1,
        description="`eva`: peft `EvaConfig.tau`; cosine similarity of successive SVD steps at which a layer "
        "counts as converged.",
    )
    whiten: bool = Field(False, description="`eva`: peft `EvaConfig.whiten`; whiten the singular vectors.")
    batch_size: int = Field(
        32, gt=0, description="`eva`: training images per SVD batch (not augmented, in the seed's order)."
    )
    max_batches: int = Field(
        200, gt=0, description="`eva`: stop with an error when the SVD has not converged after this many batches."
    )


class FullFinetuneConfig(Section):
    lr_scale: float = Field(
        0.1, gt=0,
        description="`full_finetune`: learning-rate factor of the backbone weights (the head uses finetune.lr).",
    )


class PoolSourceConfig(Section):
    path: str = Field(
        description="A MedMNIST-format .npz (2D images or 3D volumes), a .npz with `images` + `split` "
        "(+ `split_names`) arrays, or `bundled:breastmnist`."
    )
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train"], min_length=1, description="Splits of this file whose images are used."
    )
    slices: int = Field(3, gt=0, description="Central slices taken from each volume along its first axis (3D only).")


class BackbonePretrainConfig(Section):
    name: str = Field("vit_tiny_patch16_224", description="timm model name of the VisionTransformer to train.")
    arch_kwargs: dict[str, Any] = Field(
        {"img_size": 64, "patch_size": 8},
        description="Keyword arguments of `timm.create_model` (image size, patch size, ...); weights start random.",
    )
    sources: list[PoolSourceConfig] = Field(
        [PoolSourceConfig(path="bundled:breastmnist", splits=["train"])], min_length=1,
        description="Unlabelled image files and, per file, the splits used: "
        "`[{path: ..., splits: [train]}, ...]`. Nothing else is read.",
    )
    data_root: str | None = Field(
        None, description="Folder that relative source paths are read from; null = the working directory."
    )
    checkpoint_name: str = Field(
        "backbone", pattern=r"^[A-Za-z0-9._-]+$",
        description="File stem: writes `<name>_encoder.safetensors`, `<name>_decoder.safetensors`, `<name>_meta.json`.",
    )
    epochs: int = Field(2, gt=0, description="Passes over the image pool.")
    batch_size: int = Field(256, gt=0, description="Images per step.")
    base_lr: float = Field(
        1.5e-4, gt=0, description="MAE's base learning rate; the peak rate is base_lr * batch_size / 256."
    )
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (not on biases, norms, tokens).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent in linear warm-up.")
    mask_ratio: float = Field(0.75, gt=0, lt=1, description="Fraction of patches hidden from the encoder.")
    norm_pix_loss: bool = Field(True, description="Reconstruct per-patch normalised pixels.")
    decoder_dim: int = Field(128, gt=0, description="Width of the MAE decoder (4 attention heads).")
    decoder_depth: int = Field(4, gt=0, description="Transformer blocks of the MAE decoder.")
    crop_scale: tuple[float, float] = Field(
        (0.35, 1.0), description="Area range of the random resized crop, as fractions of the image."
    )
    hflip: bool = Field(True, description="Random horizontal flip.")
    bf16: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU).")
    save_dtype: Literal["float16", "float32"] = Field("float16", description="Precision of the saved weights.")
    seed: int = Field(0, ge=0, description="Seed of the initialisation, data order, crops and masks.")

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)

    @field_validator("decoder_dim")
    @classmethod
    def _check_dim(cls, v: int) -> int:
        if v % 4:
            raise ValueError("must be a multiple of 4 (the decoder has 4 attention heads)")
        return v


ARMS = ("baseline", "tpp", "baseline_matched", "eva", "linear_probe", "full_finetune")
TPP_VARIANT = re.compile(r"tpp_([a-z0-9]+)")  # `tpp_<pretext>`: the tpp arm with another pretext task


def pretext_of_arm(arm: str, pretext: PretextConfig) -> PretextConfig | None:
    """The pretext config a TPP arm pre-trains with (``tpp``: ``pretext``; ``tpp_NAME``: the same with method
    NAME); None for an arm without a TPP stage."""
    if arm == "tpp":
        return pretext
    m = TPP_VARIANT.fullmatch(arm)
    return pretext.model_copy(update={"method": m.group(1)}) if m else None


class Config(Section):
    seeds: int = Field(3, gt=0, description="Number of seeds (0..seeds-1); every arm runs every seed.")
    arms: list[str] = Field(
        ["baseline", "tpp"], min_length=1,
        description=f"Arms of the comparison, in run order; any of {', '.join(ARMS)} (see `tppeft list -v`), and "
        "`tpp_<pretext>` (e.g. `tpp_simclr`): the tpp arm with another pretext task, every other pretext key shared.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` = cuda when available.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch; null = all cores.")
    eval_batch_size: int = Field(256, gt=0, description="Images per evaluation batch.")
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    peft: PeftConfig = Field(default_factory=PeftConfig)
    pretext: PretextConfig = Field(default_factory=PretextConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    baseline_matched: BaselineMatchedConfig = Field(default_factory=BaselineMatchedConfig)
    eva: EvaArmConfig = Field(default_factory=EvaArmConfig)
    full_finetune: FullFinetuneConfig = Field(default_factory=FullFinetuneConfig)
    backbone_pretrain: BackbonePretrainConfig = Field(default_factory=BackbonePretrainConfig)

    @field_validator("arms")
    @classmethod
    def _check_arms(cls, v: list[str]) -> list[str]:
        unknown = [a for a in v if a not in ARMS and not TPP_VARIANT.fullmatch(a)]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
        if len(set(v)) != len(v):
            raise ValueError("arms must not repeat")
        return v

    @model_validator(mode="after")
    def _check_eva_method(self) -> Config:
        if "eva" in self.arms and self.peft.method != "lora":
            raise ValueError(f"arm 'eva' initialises LoRA and needs peft.method=lora (got '{self.peft.method}')")
        return self


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"  # a section-level check: its message says it
            lines.append(f"{source}: '{key}': {e['msg']}{shown}")
    return "; ".join(lines)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what and where."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(getattr(e, "problem", None) or e).split())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], value), the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY=VALUE, e.g. --set finetune.epochs=5")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set '{text}': value is not valid YAML ({_yaml_problem(e)})") from None
    return key.strip().split("."), value


def apply_override(tree: dict, keys: list[str], value: Any) -> None:
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML file (or the defaults when ``path`` is None), apply overrides, validate."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    for text in overrides:
        apply_override(tree, *parse_override(text))
        source = f"{source} + --set"
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


# Keys that change how a run is executed but not its results: they may differ on --resume.
RUNTIME_KEYS = ("threads", "checkpoint")


def results_identity(cfg: Config) -> dict:
    """The config without :data:`RUNTIME_KEYS`: what a checkpoint must agree with to be resumed from."""
    return cfg.model_dump(mode="json", exclude=set(RUNTIME_KEYS))


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def iter_fields(model: type[BaseModel] = Config, prefix: str = ""):
    """Yield (dotted key, type text, default, description) for every leaf key.

    A list of sections (``backbone_pretrain.sources``) yields the list itself, then its items' keys as ``key[].sub``.
    """
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_fields(ann, f"{prefix}{name}.")
            continue
        item = get_args(ann)[0] if get_origin(ann) is list and get_args(ann) else None
        default = field.get_default(call_default_factory=True)
        if default is PydanticUndefined:
            default = "required"
        if isinstance(item, type) and issubclass(item, BaseModel):
            shown = [d.model_dump(mode="json") for d in default]
            yield f"{prefix}{name}", f"list of {item.__name__}", shown, field.description or ""
            yield from iter_fields(item, f"{prefix}{name}[].")
            continue
        type_text = str(ann).replace("typing.", "")
        if isinstance(ann, type):
            type_text = ann.__name__
        yield f"{prefix}{name}", type_text.replace(" | ", " or "), default, field.description or ""


def docs_markdown() -> str:
    """The config reference as a Markdown table."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, type_text, default, desc in iter_fields():
        shown = yaml.safe_dump(default, default_flow_style=True, width=10_000, sort_keys=False)
        shown = shown.strip().removesuffix("...").strip()
        rows.append(f"| `{key}` | `{type_text}` | `{shown}` | {desc} |")
    return "\n".join(rows)
