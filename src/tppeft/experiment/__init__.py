"""Running a comparison: the context every run shares, one run's model, its two stages and the comparison of
arms over seeds.

``seeds.py`` (random streams), ``context.py`` (what every run shares), ``model.py`` (one run's model and the
frozen-backbone check), ``preflight.py`` (a check before any output), ``checkpoints.py`` (a stage's
checkpoints), ``pretext_stage.py`` (TPP), ``finetune_stage.py``, ``budget.py`` (``baseline_matched``'s epochs)
and ``comparison.py`` (arms x seeds, summary.json). The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.experiment.budget import matched_budget
    from tppeft.experiment.comparison import run_arm, run_comparison, summarize
    from tppeft.experiment.context import Context, prepare_context
    from tppeft.experiment.finetune_stage import finetune_stage
    from tppeft.experiment.model import BackboneChangedError, RunModel, build_run_model
    from tppeft.experiment.preflight import preflight
    from tppeft.experiment.pretext_stage import pretrain_stage

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.experiment.budget": ["matched_budget"],
    "tppeft.experiment.comparison": ["run_arm", "run_comparison", "summarize"],
    "tppeft.experiment.context": ["Context", "prepare_context"],
    "tppeft.experiment.finetune_stage": ["finetune_stage"],
    "tppeft.experiment.model": ["BackboneChangedError", "RunModel", "build_run_model"],
    "tppeft.experiment.preflight": ["preflight"],
    "tppeft.experiment.pretext_stage": ["pretrain_stage"],
})

__all__ = ["BackboneChangedError", "Context", "RunModel", "build_run_model", "finetune_stage", "matched_budget",
           "preflight", "prepare_context", "pretrain_stage", "run_arm", "run_comparison", "summarize"]
