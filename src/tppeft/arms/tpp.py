"""``tpp``: the target parameters are first pre-trained by the pretext task (the TPP stage), then fine-tuned as
in ``baseline``; ``tpp_<pretext>``: the same with another pretext task, every other ``pretext.*`` key shared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tppeft.arms.base import Arm, register_arm

if TYPE_CHECKING:
    from tppeft.pretext.config import PretextConfig


def pretext_of(arm: str, pretext: PretextConfig) -> PretextConfig:
    """``tpp``: the ``pretext`` section; ``tpp_NAME``: the same with method NAME."""
    if arm == "tpp":
        return pretext
    return pretext.model_copy(update={"method": arm.removeprefix("tpp_")})


TPP = register_arm(Arm(
    name="tpp",
    help="the same target parameters, first pre-trained by the pretext task (the TPP stage), then the same "
    "fine-tuning",
    trains="target parameters (TPP stage: target parameters + the pretext head)",
    pretext=pretext_of,
))

TPP_VARIANT = register_arm(Arm(
    name="tpp_<pretext>",
    help="`tpp` with another pretext task, e.g. `tpp_simclr` or `tpp_featdistill` (every other `pretext.*` key "
    "is shared), so several pretext tasks are compared with the same baselines in one run",
    trains=TPP.trains,
    pretext=pretext_of,
    pattern=r"tpp_[a-z0-9]+",
))
