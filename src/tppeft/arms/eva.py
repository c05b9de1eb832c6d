"""``eva``: LoRA initialised by peft's EVA (each ``A`` = top right-singular vectors of the layer's input
activations on the training images, ``B`` = 0); LoRA only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tppeft.arms.base import Arm, register_arm
from tppeft.options import Section

if TYPE_CHECKING:
    import torch

    from tppeft.config import Config
    from tppeft.experiment.context import Context
    from tppeft.experiment.model import RunModel


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


def eva_batches(ctx: Context, seed: int) -> list[torch.Tensor]:
    """Training images as model input, not augmented, in the seed's own order (``eva`` stream)."""
    from tppeft.data import iterate_batches
    from tppeft.experiment.seeds import generator

    n = len(ctx.data["train"])
    order = generator(seed, "eva")
    return [ctx.batch("train", idx) for idx in iterate_batches(n, ctx.cfg.eva.batch_size, order)]


def lora_ranks(vit: torch.nn.Module) -> dict[str, int]:
    """Rank of every LoRA layer of ``vit`` by module name (EVA may give layers different ranks)."""
    return {n.split(".lora_A")[0]: p.shape[0] for n, p in vit.named_parameters() if ".lora_A" in n}


def build(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A backbone copy with LoRA initialised by EVA from the training images; the ranks it chose per layer."""
    import torch

    from tppeft.backbones import frozen_state_digest
    from tppeft.experiment.model import RunModel
    from tppeft.experiment.seeds import stream_seed
    from tppeft.targets.eva import attach_eva_lora

    vit = ctx.backbone.fresh_model().to(ctx.device)
    own = sum(p.numel() for p in vit.parameters())
    torch.manual_seed(stream_seed(seed, "targets"))
    method, handle, names, used = attach_eva_lora(vit, ctx.cfg.peft, ctx.cfg.eva, eva_batches(ctx, seed),
                                                  ctx.backbone.identity)
    ranks = lora_ranks(vit)
    ctx.log(f"[eva seed {seed}] EVA init from {used} batches; ranks per layer "
            f"{min(ranks.values())}..{max(ranks.values())} (sum {sum(ranks.values())})")
    run = RunModel(vit, method, handle, names, frozen_state_digest(vit, set(names)), own)
    return run, {"eva_batches": used, "eva_ranks": ranks}


def needs_lora(cfg: Config) -> str | None:
    if cfg.peft.method != "lora":
        return f"arm 'eva' initialises LoRA and needs peft.method=lora (got '{cfg.peft.method}')"
    return None


EVA = register_arm(Arm(
    name="eva",
    help="LoRA initialised by peft's EVA: each `A` = top right-singular vectors of the layer's input activations "
    "on the training images, `B` = 0 (LoRA only)",
    trains="target parameters (LoRA)",
    build=build,
    options="eva",
    check=needs_lora,
))
