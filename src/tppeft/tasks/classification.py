"""Classification: head, loss, the MedMNIST metrics (ACC, AUC) and the classification task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from tppeft import distributed
from tppeft.data import ImageDataset, iterate_batches
from tppeft.rundir import ROC_FIGURE, RunFolder, RunPaths
from tppeft.tasks.base import Task, TaskContext


class Classifier(nn.Module):
    """Backbone features (timm's pooled output, class token by default) -> linear head."""

    def __init__(self, vit: nn.Module, num_outputs: int):
        super().__init__()
        self.vit = vit
        self.head = nn.Linear(vit.num_features, num_outputs)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.vit(images))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, task: str,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def scores_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def roc_points(labels: np.ndarray, scores: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(false-positive rates, true-positive rates, AUC) of one run's test scores: binary, of the positive-class
    score; otherwise of every (image, class) pair pooled one-vs-rest (micro average). None with one class."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if task != "multilabel" and scores.shape[1] == 2:
        truth, score = labels.reshape(-1), scores[:, 1]
    else:
        n = scores.shape[1]
        truth = (labels if task == "multilabel" else np.eye(n, dtype=np.int64)[labels.reshape(-1)]).reshape(-1)
        score = scores.reshape(-1)
    if len(np.unique(truth)) < 2:
        return None
    fpr, tpr, _ = roc_curve(truth, score)
    return fpr, tpr, float(roc_auc_score(truth, score))


def one_vs_rest_aucs(labels: np.ndarray, scores: np.ndarray) -> list[float]:
    """Each class's one-vs-rest AUC of its score (``labels`` of the scores' shape, multi-label 0/1: each label's
    AUC; else class ids, (N,) or (N, 1)), NaN for a class that ``labels`` lacks or holds alone (no AUC without
    positives and negatives)."""
    truth = (labels.astype(bool) if labels.shape == scores.shape
             else labels.reshape(-1, 1) == np.arange(scores.shape[1]))
    return [float(roc_auc_score(t, scores[:, c])) if 0 < t.sum() < len(t) else float("nan")
            for c, t in enumerate(truth.T)]


def classification_metrics(labels: np.ndarray, scores: np.ndarray, task: str) -> dict[str, float]:
    """ACC and AUC as MedMNIST v2 computes them, and the terms of a mean AUC one by one.

    Binary: AUC of the positive-class score, ACC at threshold 0.5. Multi-class (ordinal included):
    AUC one-vs-rest averaged over classes, ACC of the arg-max. Multi-label: both averaged over labels,
    ACC at threshold 0.5. A class (label) that ``labels`` lacks or holds alone is left out of the AUC average.
    Multi-class and multi-label also give each class's one-vs-rest AUC (each label's AUC) as ``auc_<k>``, ``k`` the
    class id (label column); NaN for one left out of the average.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "multilabel":
        each = one_vs_rest_aucs(labels, scores)
        acc = float(((scores > 0.5) == labels).mean())
    elif scores.shape[1] == 2:
        each = [roc_auc_score(labels, scores[:, 1])] if 0 < labels.sum() < len(labels) else []
        acc = float(((scores[:, 1] > 0.5).astype(int) == labels).mean())
    else:
        each = one_vs_rest_aucs(labels, scores)
        acc = float((scores.argmax(1) == labels).mean())
    aucs = [a for a in each if not np.isnan(a)]
    auc = float(np.mean(aucs)) if aucs else float("nan")
    per_class = {f"auc_{c}": a for c, a in enumerate(each)} if scores.shape[1] > 2 or task == "multilabel" else {}
    return {"acc": acc, "auc": auc, **per_class}


class ClassificationTask(Task):
    """Image classification (binary, multi-class, ordinal, multi-label): linear head on the class token."""

    name = kind = "classification"
    primary_metric = "auc"

    @property
    def metrics(self) -> list[str]:
        each = [f"auc_{c}" for c in range(self.num_classes)] if self._per_class else []
        return ["acc", "auc", *each]

    @property
    def _per_class(self) -> bool:
        """Each class's one-vs-rest AUC (each label's AUC) is reported, as :func:`classification_metrics` gives it:
        more than two classes, or several labels, where the AUC is their mean and can hide one a setting helps or
        harms."""
        return self.data_info["task"] == "multilabel" or self.num_classes > 2

    def metric_note(self) -> str:
        each = ("" if not self._per_class else "; `auc_<k>`: label k's AUC" if self.data_info["task"] == "multilabel"
                else "; `auc_<k>`: class k's one-vs-rest AUC")
        return ("ACC and AUC as MedMNIST v2 computes them (binary: positive-class score, threshold 0.5; "
                f"multi-class: one-vs-rest AUC averaged over classes; multi-label: averaged over labels{each}).")

    def undefined_metrics(self, data: ImageDataset, split: str) -> dict[str, str]:
        """AUC needs positive and negative images of some class (of some label, multi-label): a split of one class
        has none, and its AUC is undefined (NaN) for every model; so is a class's one-vs-rest AUC (``auc_<k>``)
        where the split has no image of that class, and a label's where every image has it or none does."""
        labels = data[split].labels.cpu().numpy()
        if not len(labels):
            return {}
        names = data.class_names

        def named(c: int) -> str:
            return names[c] if names and c < len(names) else str(c)

        if labels.ndim == 2:  # multi-label
            constant = [i for i in range(labels.shape[1]) if not 0 < labels[:, i].sum() < len(labels)]
            undefined = {f"auc_{i}": f"label {named(i)} is {'present' if labels[0, i] else 'absent'} in every image "
                                     f"of the {split} split, and its AUC needs both" for i in constant}
            if len(constant) == labels.shape[1]:
                undefined["auc"] = f"no label of the {split} split is both present and absent there, and AUC needs both"
            return undefined
        present = np.unique(labels).tolist()
        each = [m for m in self.metrics if m.startswith("auc_")]  # where the task reports them
        if len(present) < 2:
            reason = f"the {split} split holds images of one class only ({named(present[0])}), and AUC needs two"
            return dict.fromkeys(["auc", *each], reason)
        return {f"auc_{c}": f"the {split} split holds no image of class {named(c)}, and its one-vs-rest AUC needs "
                            "some" for c in range(self.num_classes) if each and c not in present}

    def build_model(self, vit: nn.Module) -> Classifier:
        return Classifier(vit, self.num_classes)

    def inputs(self, ctx: TaskContext, images: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Normalised model input of a batch of (N, C, H, W) images; augmented when a generator is given."""
        return ctx.normalise(ctx.augment(images, gen) if gen is not None else images)

    def train_batch(self, ctx: TaskContext, idx: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        split = ctx.data["train"]
        idx = idx.to(ctx.device)
        return self.inputs(ctx, split.pixels(idx), gen), split.labels[idx]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return classification_loss(outputs, targets, self.data_info["task"], self.cfg.finetune.label_smoothing)

    @torch.inference_mode()
    def predict(self, ctx: TaskContext, model: nn.Module, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Scores, labels and mean loss of ``split`` (no augmentation, no gradients). Under torchrun each
        process predicts its share of the split and the scores are gathered."""
        model.eval()
        scores, loss_sum = [], torch.zeros((), device=ctx.device, dtype=torch.float64)
        data = ctx.data[split]
        task = self.data_info["task"]
        start, stop = distributed.eval_share(len(data))
        for idx in iterate_batches(stop - start, ctx.cfg.eval_batch_size):
            idx = (idx + start).to(ctx.device)
            logits = model(self.inputs(ctx, data.pixels(idx), None))
            loss_sum += classification_loss(logits, data.labels[idx], task).double() * len(idx)
            scores.append(scores_from_logits(logits.float(), task))
        model.train()
        scores = distributed.gather_rows(torch.cat(scores), len(data))
        loss = distributed.eval_sum(loss_sum, len(data))
        return scores.cpu().numpy(), data.labels.cpu().numpy(), float(loss) / len(data)

    def evaluate(self, ctx: TaskContext, model: nn.Module, split: str) -> dict[str, float]:
        scores, labels, loss = self.predict(ctx, model, split)
        if split == "test":
            self.test_scores = (scores, labels)  # kept for after_test: every process evaluates, one writes
        return {**classification_metrics(labels, scores, self.data_info["task"]), "loss": loss}

    def test_metrics_of(self, keep: np.ndarray) -> dict[str, float]:
        scores, labels = self.test_scores
        return classification_metrics(labels[keep], scores[keep], self.data_info["task"])

    def after_test(self, ctx: TaskContext, model: nn.Module, run_dir: Path, seed: int) -> None:
        """Save the test split's scores and labels: the ROC curves of the comparison are drawn from them."""
        scores, labels = self.test_scores
        np.savez(RunPaths(run_dir).test_scores, scores=scores.astype(np.float32), labels=labels)

    def figures(self, ctx: TaskContext, out_dir: Path, arms: list[str]) -> list[str]:
        return roc_figure(out_dir, arms, ctx.cfg.seeds, self.data_info["task"], self.num_classes)


def roc_figure(out_dir: Path, arms: list[str], seeds: int, label_task: str, num_classes: int) -> list[str]:
    """ROC curves of every arm and seed whose run folder holds its test scores (``test_scores.npz``), drawn
    into the comparison folder; the figure's name, or none when no run saved scores. From files only, so a
    merged comparison draws them too."""
    from tppeft.reporting.plots import plot_roc

    folder = RunFolder(out_dir)
    curves: dict[str, list[tuple[np.ndarray, np.ndarray, float]]] = {}
    for arm in arms:
        for seed in range(seeds):
            path = folder.run(arm, seed).test_scores
            if path.is_file():
                with np.load(path) as f:
                    curve = roc_points(f["labels"], f["scores"], label_task)
                if curve is not None:
                    curves.setdefault(arm, []).append(curve)
    if not curves:
        return []
    plot_roc(curves, folder.figure(ROC_FIGURE), pooled=label_task == "multilabel" or num_classes > 2)
    return [ROC_FIGURE]
