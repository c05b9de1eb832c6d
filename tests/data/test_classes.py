"""`data.merge_classes`: classes merged by name or id, every split relabelled, images untouched; mistakes refused
with the data's own class names."""

import numpy as np
import pytest
import torch

from tppeft.config import load_config
from tppeft.data import data_from_config
from tppeft.data.classes import merge_classes
from tppeft.data.medmnist import ImageDataset, Split
from tppeft.options import ConfigError

NAMES = ["glioma", "meningioma", "notumor", "pituitary"]


def _four(names=NAMES, task="multiclass", kind="classification"):
    splits = {k: Split(torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 1, 4, 4).clone(),
                       torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])) for k in ("train", "val", "test")}
    return ImageDataset("brain", splits, task, 4, kind, names)


def test_merged_classes_take_their_first_members_place_and_relabel_every_split():
    data = _four()
    merged = merge_classes(data, {"tumour": ["glioma", "meningioma", "pituitary"]})
    assert merged.class_names == ["tumour", "notumor"] and merged.num_classes == 2
    for k, split in merged.splits.items():
        assert split.labels.tolist() == [0, 0, 1, 0, 0, 1, 0, 0]
        assert torch.equal(split.images, data[k].images)
    renamed = merge_classes(data, {"mass": ["notumor", "pituitary"], "g": ["glioma"]})
    assert renamed.class_names == ["g", "meningioma", "mass"]
    assert renamed["val"].labels.tolist() == [0, 1, 2, 2, 2, 2, 1, 0]
    by_id = merge_classes(_four(names=None), {"x": [0, "3"]})  # no names in the data: ids, as ints or text
    assert by_id.class_names == ["x", "1", "2"] and by_id["test"].labels.tolist() == [0, 1, 2, 0, 0, 2, 1, 0]


def test_a_merge_that_cannot_work_is_refused():
    with pytest.raises(ConfigError, match="'astrocytoma' is not a class of brain \\(its classes: glioma, meningioma"):
        merge_classes(_four(), {"tumour": ["astrocytoma"]})
    with pytest.raises(ConfigError, match="leaves brain one class"):
        merge_classes(_four(), {"all": NAMES})
    with pytest.raises(ConfigError, match="single-label classification"):
        merge_classes(_four(task="multilabel"), {"x": ["glioma"]})
    for groups, message in (({"a": ["glioma"], "b": ["glioma", "notumor"]}, "glioma in more than one group"),
                            ({"a": []}, "every group names at least one class")):
        with pytest.raises(ConfigError, match=f"'data.merge_classes': {message}"):
            load_config(None, [f"data.merge_classes={groups}"])


def test_the_data_section_merges_what_it_reads(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{k}_images": rng.integers(0, 255, (12, 8, 8), dtype=np.uint8) for k in ("train", "val", "test")}
    arrays |= {f"{k}_labels": np.arange(12)[:, None] % 4 for k in ("train", "val", "test")}
    np.savez(tmp_path / "four.npz", class_names=np.array(NAMES), **arrays)
    lines = []
    cfg = load_config(None, [f"data.path={tmp_path / 'four.npz'}",
                             "data.merge_classes={tumour: [glioma, meningioma, pituitary]}"])
    data = data_from_config(cfg.data, log=lines.append)
    assert data.class_names == ["tumour", "notumor"]
    assert data["train"].labels.tolist() == [0, 0, 1, 0] * 3
    assert lines[-1] == ("data: classes merged (data.merge_classes): tumour = glioma + meningioma + pituitary; "
                         "2 classes: tumour, notumor")
