"""The pretext-task contract (the registry is the package's ``__init__``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.options import ConfigError
from tppeft.pretext.config import PretextConfig


class PretextTask(nn.Module):
    """A self-supervised objective on top of a backbone that carries target parameters.

    Built with the shared frozen ``backbone`` (its ``model`` is the untouched template, without target
    parameters) and ``vit``, this run's copy with the target parameters attached: the target parameters are
    exactly the parameters of ``vit`` that require gradients when the task is built.

    ``loss(images, generator)`` takes a normalised batch and returns a scalar; the randomness it needs
    (masks, views) comes from ``generator`` so that a seed fixes it. In ``eval()`` mode a task must not
    change any state of its own (teacher, centre): the held-out loss is then a pure function of the weights,
    the images and the generator.
    """

    name: ClassVar[str]
    # True when the task makes its own views of each image; the stage then gives it un-augmented batches.
    own_views: ClassVar[bool] = False
    # True when the loss couples the images of a batch (negatives, a batch centre): a batch shared between
    # processes (torchrun) would change it, so such a task runs in one process.
    batch_coupled: ClassVar[bool] = False
    # True when the loss compares the student with a target that the stage itself moves (an EMA teacher): its
    # held-out value at the end is then measured against another target than at the start.
    moving_target: ClassVar[bool] = False

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__()
        self.cfg = cfg
        # Where the temporary head came from, for the log, results.jsonl and summary.json; a task that can
        # start from a checkpoint's own head (MAE's decoder, DINO's projection head) says which.
        self.head_source = f"fresh {self.name} head"
        if self.own_views and len(vit.patch_embed.patch_size) == 3:
            raise ConfigError(f"pretext.method '{self.name}' makes 2D views of images; with backbone.dims: 3 use a "
                              "masked-image task (mae, simmim, featdistill)")

    def start_warning(self, images: torch.Tensor) -> str | None:
        """What a batch of plain images says, before any training, about how the stage is likely to fail (an
        output that starts collapsed, say); None when it says nothing such. The stage logs it at its start."""
        return None

    def collapse_warning(self, held_out_loss: float) -> str | None:
        """What the held-out loss at the end of the stage says went wrong in this task's own terms (a
        collapsed output, say); None when it says nothing such. The stage warns with it first."""
        return None

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def head_param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups of the temporary head that trains alongside the target parameters."""
        return []

    def begin_stage(self, steps_per_epoch: int, total_steps: int) -> None:
        """Called before the TPP stage proper (not the head warm-up) with its length in optimizer steps; a task
        whose settings change over the stage sets its schedule here."""

    def after_step(self) -> None:
        """Called after every optimizer step of the TPP stage (an EMA teacher updates here)."""

    def describe(self) -> str:
        """A few words on the task's set-up for the log."""
        return self.name

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for g in self.head_param_groups(1.0) for p in g["params"]]

