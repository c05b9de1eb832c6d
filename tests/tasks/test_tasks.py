import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tppeft.tasks import Classifier, classification_loss, classification_metrics


def test_binary_metrics_by_hand():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.4, 0.6], [0.65, 0.35], [0.2, 0.8]])
    m = classification_metrics(labels, scores, "multiclass")
    # positives score 0.35 and 0.8; negatives 0.1 and 0.6: 3 of 4 pairs ordered -> AUC 0.75
    assert m["auc"] == pytest.approx(0.75)
    # threshold 0.5 on the positive score: predictions 0,1,0,1 -> 2 of 4 right
    assert m["acc"] == pytest.approx(0.5)


def test_multiclass_auc_is_one_vs_rest_mean():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    scores = rng.dirichlet(np.ones(3), 50)
    m = classification_metrics(labels, scores, "multiclass")
    each = [roc_auc_score(labels == c, scores[:, c]) for c in range(3)]
    assert m["auc"] == pytest.approx(np.mean(each)) and m["acc"] == pytest.approx((scores.argmax(1) == labels).mean())
    assert [m[f"auc_{c}"] for c in range(3)] == pytest.approx(each)  # each class's one-vs-rest AUC, by class id
    binary = classification_metrics(labels % 2, scores[:, :2] / scores[:, :2].sum(1, keepdims=True), "multiclass")
    assert set(binary) == {"acc", "auc"}  # two classes: one question, no per-class AUC


def test_multilabel_and_degenerate_cases():
    labels = np.array([[0, 1], [1, 1], [0, 1]])
    scores = np.array([[0.2, 0.9], [0.7, 0.4], [0.6, 0.8]])
    m = classification_metrics(labels, scores, "multilabel")
    assert m["auc"] == pytest.approx(1.0)  # label 1 has one class only: left out
    assert m["auc_0"] == pytest.approx(1.0) and np.isnan(m["auc_1"])  # each label's AUC, NaN where undefined
    assert m["acc"] == pytest.approx(4 / 6)
    assert np.isnan(classification_metrics(np.array([1, 1]), np.array([[0.3, 0.7]] * 2), "multiclass")["auc"])


def test_classifier_and_losses(b0):
    clf = Classifier(b0.fresh_model(), 3)
    logits = clf(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3)
    assert classification_loss(logits, torch.tensor([0, 2]), "multiclass").ndim == 0
    assert classification_loss(logits, torch.tensor([[0, 1, 1], [1, 0, 0]]), "multilabel").ndim == 0


def test_a_task_names_each_classs_or_labels_auc_and_which_a_split_cannot_define(tmp_path):
    from conftest import write_medmnist

    from tppeft.config import load_config
    from tppeft.data import load_medmnist
    from tppeft.tasks.classification import ClassificationTask

    cfg = load_config(None)
    path = write_medmnist(tmp_path / "ml.npz", multilabel=3)
    arrays = dict(np.load(path))
    arrays["test_labels"][:, 1] = 1  # label 1 in every test image
    np.savez(path, **arrays, class_names=np.array(["effusion", "mass", "nodule"]))
    data = load_medmnist(path)
    task = ClassificationTask(cfg, data)
    assert task.metrics == ["acc", "auc", "auc_0", "auc_1", "auc_2"]
    assert task.undefined_metrics(data, "test") == {
        "auc_1": "label mass is present in every image of the test split, and its AUC needs both"}
    binary = ClassificationTask(cfg, load_medmnist(write_medmnist(tmp_path / "two.npz")))
    assert binary.metrics == ["acc", "auc"]  # one question: nothing to split
    three = load_medmnist(write_medmnist(tmp_path / "three.npz", classes=3))
    three["test"].labels[:] = 0
    assert ClassificationTask(cfg, three).undefined_metrics(three, "test") == dict.fromkeys(
        ["auc", "auc_0", "auc_1", "auc_2"], "the test split holds images of one class only (0), and AUC needs two")
