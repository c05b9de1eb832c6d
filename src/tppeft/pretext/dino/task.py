"""DINO-style self-distillation of the target parameters (Caron et al., "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294).

Student: the frozen backbone with the target parameters plus a DINO head. Teacher: the same backbone with
an exponential moving average of the target parameters and of the head; the frozen weights are shared, not
copied (see :mod:`tppeft.pretext.ema`). The teacher sees the two global crops, the student every crop
(global and local); the loss is DINO's cross-entropy with a centred and sharpened teacher.

The loss compares the student with a teacher that moves during the stage, so its held-out value is not a
fixed objective: a falling value says the student agrees better with the current teacher, not that it
matches a fixed target better. It is measured at ``teacher_temp`` whatever the schedule.

The rest of DINO's recipe is optional (``pretext.dino.warmup_teacher_temp``, ``momentum_end``,
``freeze_last_layer_epochs``; :mod:`tppeft.pretext.dino.schedule`): the task then counts the TPP stage's applied
steps in a buffer, checkpointed with the teacher, so that a resumed stage goes on where it stopped.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.options import ConfigError
from tppeft.pretext.base import PretextTask
from tppeft.pretext.config import PretextConfig
from tppeft.pretext.dino.schedule import DinoSchedule, describe_schedule
from tppeft.pretext.ema import EMATeacher
from tppeft.pretext.encoder import ViewEncoder, encode, encode_views, pooled
from tppeft.pretext.heads import DINOHead
from tppeft.pretext.losses import DINOLoss
from tppeft.pretext.views.transform import MultiCropViews

COLLAPSE_MARGIN = 0.02  # a held-out loss above 98% of ln K counts as the uniform collapse
# A centred teacher above 95% of ln K at the start is near the collapse: b0's DINO stages on brain MRI, which
# collapsed, started at 97-99% of it; the same heads with batch norm start at about 74%.
START_MARGIN = 0.05


class SelfDistillation(PretextTask):
    name = "dino"
    own_views = True
    batch_coupled = True
    moving_target = True

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__(backbone, vit, cfg)
        d = cfg.dino
        if cfg.views.local_crops and cfg.views.local_size % backbone.patch_size:
            raise ConfigError(f"pretext.views.local_size {cfg.views.local_size} is not a multiple of the "
                              f"backbone's patch size {backbone.patch_size}")
        saved = backbone.dino_head
        if d.head == "pretrained" and saved is None:
            raise ConfigError(f"pretext.dino.head=pretrained but {backbone.describe_source()} has no DINO head "
                              "(expected a DINO checkpoint whose teacher or student holds head.mlp.* and "
                              "head.last_layer.*); use pretext.dino.head=fresh")
        if saved is not None and d.head != "fresh":
            if d.use_bn:
                raise ConfigError(f"pretext.dino.use_bn applies to a fresh head, and {backbone.describe_source()} "
                                  "brings its own DINO head; set pretext.dino.head=fresh to use it")
            head = DINOHead(vit.num_features, saved.out_dim, saved.hidden_dim, saved.bottleneck_dim, gain=saved.gain)
            head.load_state_dict(saved.state)
            out_dim, self.head_source = saved.out_dim, f"pretrained DINO head ({saved.origin})"
        else:
            head = DINOHead(vit.num_features, d.out_dim, d.hidden_dim, d.bottleneck_dim, use_bn=d.use_bn)
            out_dim, self.head_source = d.out_dim, f"fresh DINO head{' with batch norm' if d.use_bn else ''}"
        self.student = ViewEncoder(vit, head)
        self.teacher = EMATeacher(self.student)
        self.views = MultiCropViews(cfg.views, torch.tensor(backbone.mean), torch.tensor(backbone.std))
        self.criterion = DINOLoss(out_dim, d.student_temp, d.teacher_temp, d.center_momentum)
        if saved is not None and d.head != "fresh" and saved.center is not None:
            self.criterion.center.copy_(saved.center.reshape(1, -1))  # the centre DINO saved with the head
        self.schedule: DinoSchedule | None = None  # set for the stage proper; the head warm-up has none
        if d.scheduled:
            self.register_buffer("stage_step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def start_warning(self, images: torch.Tensor) -> str | None:
        """The uniform collapse foreseen: the teacher's output on ``images``, centred by their mean and sharpened
        at the starting temperature, already within ``START_MARGIN`` of the uniform output's entropy ln K."""
        if len(images) < 2:
            return None
        temp = self.cfg.dino.start_teacher_temp
        was_training = self.training
        self.eval()
        try:
            logits = self.teacher(self.student, images)
            p = torch.softmax((logits - logits.mean(0)) / temp, dim=-1)
            entropy = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
            k = p.shape[-1]
            if entropy < math.log(k) * (1 - START_MARGIN):
                return None
            features = nn.functional.normalize(pooled(self.student.vit, encode(self.student.vit, images)), dim=-1)
        finally:
            self.train(was_training)
        others = ~torch.eye(len(images), dtype=torch.bool, device=images.device)
        alike = float((features @ features.T)[others].mean())
        return (f"DINO starts near its uniform collapse: on {len(images)} validation images the centred teacher's "
                f"entropy is {entropy:.3f}, {entropy / math.log(k):.0%} of a uniform output's ln {k} = "
                f"{math.log(k):.3f}, as the backbone's pooled features are alike across images (mean pairwise cosine "
                f"{alike:.2f}); pretext.dino.use_bn=true standardises them across the batch")

    def collapse_warning(self, held_out_loss: float) -> str | None:
        """A student output spread evenly over the prototypes has cross-entropy ln K against any teacher: a
        held-out loss within ``COLLAPSE_MARGIN`` of it is DINO's uniform collapse."""
        k = self.criterion.center.shape[-1]
        if held_out_loss >= math.log(k) * (1 - COLLAPSE_MARGIN):
            return (f"DINO collapsed: the held-out loss {held_out_loss:.4f} is that of a uniform output over its {k} "
                    f"prototypes (ln {k} = {math.log(k):.4f}), so the target parameters were trained towards no "
                    "signal. Where the backbone's pooled features differ little between images, the centred "
                    "teacher is nearly uniform from the first step: pretext.dino.use_bn=true standardises them "
                    "across the batch. The other settings to vary are the stage's length, pretext.lr (DINO's own "
                    "recipe trains at about 1e-4 for a batch of 64), pretext.dino.teacher_temp and the rest of DINO's "
                    "recipe (pretext.dino.warmup_teacher_temp, momentum_end, freeze_last_layer_epochs), judged on "
                    "the linear probe's validation score (pretext.probe), not on this loss")
        return None

    def describe(self) -> str:
        v, d = self.cfg.views, self.cfg.dino
        scheduled = describe_schedule(d)
        return (f"dino ({self.head_source}; 2 global + {v.local_crops} local {v.local_size}px crops, "
                f"EMA momentum {d.momentum}{'; ' + scheduled if scheduled else ''})")

    def begin_stage(self, steps_per_epoch: int, total_steps: int) -> None:
        if self.cfg.dino.scheduled:
            self.schedule = DinoSchedule(self.cfg.dino, steps_per_epoch, total_steps)

    def _teacher_temp(self) -> float:
        """The scheduled temperature while training; ``teacher_temp`` for the held-out loss, a fixed measure."""
        d = self.cfg.dino
        if not self.training:
            return d.teacher_temp
        return d.start_teacher_temp if self.schedule is None else self.schedule.teacher_temp(int(self.stage_step))

    def head_param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.student.head.parameters()), "lr": lr}]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.criterion.teacher_temp = self._teacher_temp()
        if self.training and self.schedule is not None:  # a frozen layer gets no gradient, so no update
            frozen = self.schedule.last_layer_frozen(int(self.stage_step))
            for p in self.student.head.last_layer_parameters():
                p.requires_grad_(not frozen)
        views = self.views(images, generator)
        globals_ = views[:self.views.global_views]
        teacher_out = torch.stack(self.teacher(self.student, torch.cat(globals_)).chunk(len(globals_)))
        student_out = torch.stack(encode_views(self.student, views))
        return self.criterion(teacher_out, student_out)

    def after_step(self) -> None:
        momentum = self.cfg.dino.momentum
        if self.schedule is not None:
            momentum = self.schedule.momentum(int(self.stage_step))
            self.stage_step += 1
        self.teacher.update(self.student, momentum)
