"""The ``pretext`` section: the TPP stage's own keys, the keys the masked-image tasks share, MAE's decoder keys
(flat, from ``mae/config.py``) and one sub-section per task or part with options (``views``, ``dino``,
``simclr``, ``featdistill``). Torch-free: ``tppeft.config`` composes it."""

from __future__ import annotations

import math
from typing import Self

from pydantic import Field, field_validator

from tppeft.data.config import PoolSourceConfig
from tppeft.options import Section
from tppeft.pretext.dino.config import DinoConfig
from tppeft.pretext.featdistill.config import FeatDistillConfig
from tppeft.pretext.mae.config import MaeOptions
from tppeft.pretext.simclr.config import SimclrConfig
from tppeft.pretext.views.config import ViewsConfig


class PretextStageOptions(Section):
    """The TPP stage: which pretext task, and its optimisation."""

    method: str = Field("mae", description="Pretext task of the TPP stage (see `tppeft list`).")
    epochs: int = Field(6, ge=0, description="Epochs of the TPP stage over the training images.")
    steps: int | None = Field(
        None, ge=1, description="The TPP stage's length in optimizer steps instead of `epochs` (which it then "
        "replaces): turned into whole epochs over the stage's images, rounded up, so that a stage is as long on "
        "200 images as on 4,000. The record keeps both (`epochs`, `steps`). None: `epochs` sets the length.",
    )
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW, warm-up then cosine).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(64, gt=0, description="Images per step.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    warmup_steps: int | None = Field(
        None, ge=0, description="Linear warm-up length in optimizer steps instead of `warmup_epochs` (which it then "
        "replaces). None: `warmup_epochs`.",
    )
    data: list[PoolSourceConfig] = Field(
        [], description="More unlabelled images for the TPP stage only (never for fine-tuning or evaluation): "
        "`[{path: FILE_OR_FOLDER, splits: [train]}, ...]`: MedMNIST-format or `images` + `split` .npz files, or "
        "folders of image files (without train/val/test folders every image is a training image); training "
        "splits only; relative paths from the working folder. An epoch of the stage then covers these images too. "
        "Refused if any image is one of the run's validation or test images pixel for pixel; copies of its "
        "training images are counted (`also_in_train`) and seen twice per epoch. 2D backbones only.",
    )
    drop_train_copies: bool = Field(
        False, description="Leave out of `pretext.data` the images that are the run's own training images, pixel "
        "for pixel, so that the TPP stage sees each once per epoch (by default they stay and are seen twice). "
        "Recorded per source as `left_out_train_copies`.",
    )
    head_warmup_epochs: int = Field(
        0, ge=0, description="Epochs that train a fresh pretext head (decoder, projection head) alone, target "
        "parameters frozen, before the TPP stage proper (0 = none).",
    )
    head_warmup_steps: int | None = Field(
        None, ge=0, description="The head warm-up's length in optimizer steps instead of `head_warmup_epochs` "
        "(which it then replaces), rounded up to whole epochs. None: `head_warmup_epochs`.",
    )
    stage_seed: int | None = Field(
        None, ge=0, description="One TPP stage for the whole comparison: made once, with this seed's "
        "target-parameter init and data order, in `runs/<arm>/stage`, and every seed's run of a `tpp` arm fine-tunes "
        "from it, as when one `tppeft pretrain` serves several `tppeft finetune --init` runs. The paired intervals "
        "then cover fine-tuning seeds and label draws, not the stage's own variation. None: each seed makes its "
        "own stage.",
    )
    stage_from: str | None = Field(
        None, description="A TPP stage made before, by `tppeft pretrain` (its output folder) or by another "
        "comparison (its `runs/<arm>/stage` folder), serves this comparison's TPP arm instead of a stage made here: "
        "one stage, many comparisons (label budgets, labellings, fine-tuning settings). Needs `pretext.stage_seed` "
        "equal to the stage's seed; everything the stage reads must equal this config's, which is checked before "
        "anything runs: the images it trained on (training split and `pretext.data`, by their SHA-256, wherever "
        "they are read from and however labelled), backbone, `peft`, `task`, the data's size and augmentation, "
        "`pretext` but for `probe`. The "
        "linear probe and the movement are measured again here, on this comparison's labels; `baseline_matched` is "
        "charged the stage as if made here. None: the stage is made here.",
    )
    probe: bool = Field(
        True, description="Classification: a linear probe (logistic regression on frozen features, C chosen on "
        "validation) of the primary metric with the target parameters at initialisation and after the TPP stage, "
        "and how far they moved, in each TPP run's record and the report.",
    )

    def in_epochs(self, steps_per_epoch: int) -> Self:
        """These options with every length given in steps (`steps`, `warmup_steps`, `head_warmup_steps`) turned
        into epochs of ``steps_per_epoch`` optimizer steps (whole epochs rounded up; the LR warm-up exact)."""
        update: dict = {}
        if self.steps is not None:
            update["epochs"] = math.ceil(self.steps / steps_per_epoch)
        if self.warmup_steps is not None:
            update["warmup_epochs"] = self.warmup_steps / steps_per_epoch
        if self.head_warmup_steps is not None:
            update["head_warmup_epochs"] = math.ceil(self.head_warmup_steps / steps_per_epoch)
        return self.model_copy(update=update) if update else self

    @field_validator("data")
    @classmethod
    def _training_splits_only(cls, v: list[PoolSourceConfig]) -> list[PoolSourceConfig]:
        for src in v:
            if list(src.splits) != ["train"]:
                raise ValueError(f"pretext.data: {src.path} lists splits {list(src.splits)}; extra unlabelled "
                                 "images come from training splits only (splits: [train])")
        return v


class MaskedImageOptions(Section):
    """What the masked-image tasks share (the masking of ``masking.py``); ``tppeft backbone-pretrain`` too."""

    mask_ratio: float = Field(
        0.5, gt=0, lt=1,
        description="Fraction of patches masked (`mae`, `simmim`, `featdistill`; also `tppeft backbone-pretrain`).",
    )
    norm_pix_loss: bool = Field(
        True, description="Reconstruct per-patch normalised pixels (`mae`, `simmim`; also `tppeft backbone-pretrain`)."
    )


class PretextConfig(MaeOptions, MaskedImageOptions, PretextStageOptions):
    """The ``pretext`` section."""

    views: ViewsConfig = Field(default_factory=ViewsConfig, description="Views of `dino` and `simclr`.")
    dino: DinoConfig = Field(default_factory=DinoConfig, description="DINO's options.")
    simclr: SimclrConfig = Field(default_factory=SimclrConfig, description="SimCLR's options.")
    featdistill: FeatDistillConfig = Field(default_factory=FeatDistillConfig, description="featdistill's options.")
