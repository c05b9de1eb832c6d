"""What an arm of a comparison is, and the registry of arms.

Every arm sees the same data, splits, augmentation and evaluation and, for a seed, the same head init and data
order (the streams of :mod:`tppeft.experiment.seeds`); arms differ only in what is trained and from where, whether a
TPP stage comes first, and how many fine-tuning epochs they get. An :class:`Arm` states these facts; the model
builder it names (``model``, one of :mod:`tppeft.experiment.builders`) makes its model. Torch-free and below the
configuration: ``tppeft.config`` validates arm names and their options against the registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tppeft.errors import did_you_mean
from tppeft.options import ConfigError

if TYPE_CHECKING:
    from tppeft.pretext.config import PretextConfig


@dataclass(frozen=True)
class Arm:
    """One arm: its facts, read by the configuration, the comparison, ``tppeft list`` and the docs.

    ``pretext`` maps (arm name, ``pretext`` section) to the pretext config of the arm's TPP stage; None: no TPP
    stage. ``extra_epochs`` maps the matched budget (:func:`tppeft.experiment.budget.matched_budget`, as one run
    sees it: its ``extra_epochs`` that run's) to fine-tuning epochs beyond ``finetune.epochs``; None: none, and no
    budget is needed. ``check`` is given the whole configuration (a :class:`tppeft.config.Config`, which imports
    this package, hence ``Any``) and names what is wrong with it for this arm, or returns None. A family
    (``pattern`` set) stands for every name that fully matches the pattern; :func:`get_arm` returns it under that
    name.
    """

    name: str  # a family's name is a template, e.g. ``tpp_<pretext>``
    help: str  # one line: what the arm is
    trains: str  # what fine-tuning trains besides the task's new head
    model: str = "targets"  # the builder of its model, registered in tppeft.experiment.builders
    carries_targets: bool = True  # whether its model carries the PEFT method's target parameters
    pretext: Callable[[str, PretextConfig], PretextConfig] | None = None
    extra_epochs: Callable[[dict], int] | None = None
    epochs_rule: str = "`finetune.epochs`"  # its fine-tuning epochs, in words
    options: str | None = None  # the configuration section of its own options (no other arm reads it)
    check: Callable[[Any], str | None] | None = None
    pattern: str | None = None  # a regular expression: the arm is a family

    @property
    def has_tpp_stage(self) -> bool:
        return self.pretext is not None

    @property
    def uses_budget(self) -> bool:
        return self.extra_epochs is not None

    def pretext_config(self, pretext: PretextConfig) -> PretextConfig | None:
        """The pretext config of this arm's TPP stage, given the ``pretext`` section; None without one."""
        return None if self.pretext is None else self.pretext(self.name, pretext)

    def finetune_epochs(self, epochs: int, budget: dict | None = None, seed: int = 0) -> int:
        """Fine-tuning epochs of this arm in run ``seed`` when the others get ``epochs``."""
        if self.extra_epochs is None:
            return epochs
        if budget is None:
            raise ValueError(f"arm {self.name} needs the matched budget (tppeft.experiment.budget.matched_budget)")
        own = (budget.get("extra_epochs_per_seed") or {}).get(str(seed))  # whole volumes: each seed its own
        return epochs + self.extra_epochs(budget if own is None else {**budget, "extra_epochs": own})


_ARMS: dict[str, Arm] = {}


def register_arm(arm: Arm) -> Arm:
    """Add ``arm`` to the registry (after the arms already there); a name may be registered once."""
    if arm.name in _ARMS:
        raise ValueError(f"arm '{arm.name}' is already registered")
    _ARMS[arm.name] = arm
    return arm


def find_arm(name: str) -> Arm | None:
    """The arm called ``name`` (a family's member carries its own name), or None."""
    arm = _ARMS.get(name)
    if arm is not None and arm.pattern is None:
        return arm
    for family in _ARMS.values():
        if family.pattern is not None and re.fullmatch(family.pattern, name):
            return replace(family, name=name, pattern=None)
    return None


def get_arm(name: str) -> Arm:
    """The arm called ``name``; an unknown name is a :class:`ConfigError`."""
    arm = find_arm(name)
    if arm is None:
        raise ConfigError(f"unknown arm '{name}'{did_you_mean(name, _ARMS)}; choose from {list(_ARMS)}")
    return arm


def list_arms() -> dict[str, str]:
    """Every registered arm's help, by name, in registration order (families by their template)."""
    return {name: arm.help for name, arm in _ARMS.items()}


def registered_arms() -> list[Arm]:
    """Every registered arm, in registration order."""
    return list(_ARMS.values())


def arms_markdown() -> str:
    """The arms as a Markdown table (docs/arms.md's, between its ``arms`` markers)."""
    rows = ["| arm | what it is | fine-tuning trains (and the task's head) | TPP stage | fine-tuning epochs |",
            "|---|---|---|---|---|"]
    for arm in _ARMS.values():
        rows.append(f"| `{arm.name}` | {arm.help} | {arm.trains} | {'yes' if arm.has_tpp_stage else 'no'} | "
                    f"{arm.epochs_rule} |")
    return "\n".join(rows)
