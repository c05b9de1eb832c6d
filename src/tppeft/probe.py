"""Diagnostics of a TPP stage before any label is used for training: a linear probe of the frozen features
with the target parameters at initialisation and after the stage, and how far the target parameters moved.

The probe is scikit-learn's logistic regression on standardised features (class token and mean patch token of
the backbone's final normalised output), its inverse regularisation ``C`` chosen on the validation split; the
test score is that of the chosen ``C``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch import nn

PROBE_CS = (0.01, 0.1, 1.0, 10.0)


@torch.inference_mode()
def frozen_features(vit: nn.Module, batches: Iterable[torch.Tensor]) -> np.ndarray:
    """(N, 2 * width) features: the class token and the mean patch token of ``vit.forward_features``."""
    out = []
    prefix = getattr(vit, "num_prefix_tokens", 1)
    for images in batches:
        tokens = vit.forward_features(images).float()
        out.append(torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], 1).cpu())
    return torch.cat(out).numpy()


def score(metric: str, labels: np.ndarray, probs: np.ndarray) -> float:
    """``auc`` (binary: of class 1; more classes: one-vs-rest macro) or ``acc`` of predicted probabilities."""
    if metric == "acc":
        return float(accuracy_score(labels, probs.argmax(1)))
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def linear_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], metric: str, seed: int = 0) -> dict:
    """Fit on ``train``, choose C on ``val`` by ``metric``, report val and test at that C."""
    scaler = StandardScaler().fit(train[0])
    x_train, x_val, x_test = (scaler.transform(x) for x in (train[0], val[0], test[0]))
    best = None
    for c in PROBE_CS:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, train[1])
        got = score(metric, val[1], clf.predict_proba(x_val))
        if best is None or got > best[0]:
            best = (got, c, clf)
    val_score, c, clf = best
    return {"metric": metric, "C": c, "val": val_score, "test": score(metric, test[1], clf.predict_proba(x_test))}


def probe_run(vit: nn.Module, batches: Callable[[str], Iterable[torch.Tensor]], labels: Callable[[str], np.ndarray],
              metric: str, seed: int = 0) -> dict:
    """The probe of ``vit`` as it is now: ``batches(split)`` yields model inputs, ``labels(split)`` class ids."""
    was_training = vit.training
    vit.eval()
    data = {s: (frozen_features(vit, batches(s)), labels(s)) for s in ("train", "val", "test")}
    vit.train(was_training)
    return linear_probe(data["train"], data["val"], data["test"], metric, seed)


def movement(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict:
    """How far target parameters moved: ||after - before|| / ||before|| over all of them (None if all were 0)."""
    delta = sum(float((after[k].detach().float() - before[k].detach().float()).pow(2).sum()) for k in before) ** 0.5
    base = sum(float(before[k].detach().float().pow(2).sum()) for k in before) ** 0.5
    return {"change_norm": delta, "relative_change": delta / base if base > 0 else None}


@torch.no_grad()
def lora_update_norms(vit: nn.Module) -> dict | None:
    """For LoRA: per adapted layer ||scaling * B A|| / ||W|| (Frobenius), their mean and maximum; None without LoRA."""
    ratios = {}
    for name, module in vit.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            for adapter in module.lora_A:
                delta = module.get_delta_weight(adapter).float()
                ratios[name] = float(delta.norm() / module.base_layer.weight.float().norm())
    if not ratios:
        return None
    values = list(ratios.values())
    return {"mean": float(np.mean(values)), "max": float(np.max(values)), "per_layer": ratios}
