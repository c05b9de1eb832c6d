"""3D segmentation slice by slice: slices as items (neighbours as channels), predictions stacked back into
volumes, per-volume 3D Dice/IoU on each volume's own voxels, and a whole comparison on tiny NIfTI volumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nifti_data import write_msd

from tppeft.cli import main
from tppeft.data.nifti import VolumeSplit, load_nifti_dataset
from tppeft.tasks.segmentation3d import SliceSplit, preview_slices, volume_scores


def _volumes() -> VolumeSplit:
    """Two volumes padded into (4, 3, 3): depths 2 and 4."""
    images = torch.arange(2 * 4 * 9, dtype=torch.float32).view(2, 4, 3, 3) / 100
    labels = torch.zeros(2, 4, 3, 3, dtype=torch.uint8)
    labels[0, 1:3, 1, 1] = 1
    labels[1, :, 0, 0] = 2
    return VolumeSplit(images, labels, extent=torch.tensor([[2, 3, 3], [4, 3, 3]]),
                       offset=torch.tensor([[1, 0, 0], [0, 0, 0]]), spacing=torch.ones(2, 3), names=["a", "b"])


def test_slices_are_items_with_neighbours_clamped_to_their_volume():
    vols = _volumes()
    split = SliceSplit.of(vols, neighbours=1)
    assert len(split) == 6 and split.rows.tolist() == [1, 2, 4, 5, 6, 7]  # padding slices 0 and 3 are not items
    assert split.channels.tolist() == [[1, 1, 2], [1, 2, 2], [4, 4, 5], [4, 5, 6], [5, 6, 7], [6, 7, 7]]
    x = split.pixels(torch.tensor([1, 3]))
    assert x.shape == (2, 3, 3, 3)
    assert torch.equal(x[0, 1], vols.images[0, 2]) and torch.equal(x[0, 0], vols.images[0, 1])
    assert torch.equal(x[1], vols.images[1, 0:3])
    assert SliceSplit.of(vols).pixels(torch.tensor([0])).shape == (1, 1, 3, 3)
    # stacking per-item predictions back gives the volumes' layout; padding slices stay background
    assert torch.equal(split.stack(split.item_labels()), vols.labels)
    assert preview_slices(split, 4) == [0, 2]  # the slice with most foreground of each volume


def test_volume_scores_are_per_volume_3d_on_own_voxels():
    vols = _volumes()
    pred = vols.labels.clone()
    pred[0, 0] = 1  # a padding slice of volume 0: outside the volume, not scored
    dice, iou = volume_scores(pred, vols, 3)
    assert dice.shape == (2, 2) and torch.isnan(dice[0, 1]) and torch.isnan(dice[1, 0])  # empty classes left out
    assert dice[0, 0] == 1 and dice[1, 1] == 1 and iou[0, 0] == 1
    pred[1, 0, 0, 0] = 0  # one of volume b's four class-2 voxels missed: 3D Dice 2*3/(3+4)
    pred[1, 1, 2, 2] = 2  # and one false positive: 2*3/(4+4)
    dice, iou = volume_scores(pred, vols, 3)
    assert dice[1, 1] == pytest.approx(6 / 8) and iou[1, 1] == pytest.approx(3 / 5)
    dice, _ = volume_scores(pred, vols, 3, ignore_empty=False)
    assert dice[0, 1] == 1  # an empty class predicted empty scores 1


def test_slice_split_keeps_the_items_on_a_move(tmp_path):
    ds = load_nifti_dataset(write_msd(tmp_path / "msd", n=10))
    split = SliceSplit.of(ds["train"], 1)
    split.size, split.input_labels = 16, torch.zeros(len(split), 16, 16)
    moved = split.to("cpu")
    assert torch.equal(moved.rows, split.rows) and moved.size == 16 and moved.input_labels.shape[0] == len(split)
    assert len(split) == int(ds["train"].extent[:, 0].sum())


def test_comparison_on_nifti_volumes(tmp_path, capsys):
    root = write_msd(tmp_path / "msd", n=10)
    out = tmp_path / "run"
    sets = ["pretext.probe=false", "threads=1", "seeds=1", "pretext.epochs=1", "finetune.epochs=1",
            "pretext.batch_size=8",
            "finetune.batch_size=8", "data.image_size=32", "task.neighbour_slices=1", f"data.path={root}"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "segmentation3d" and summary["primary_metric"] == "dice"
    assert summary["metrics"] == ["dice", "iou", "dice_1", "dice_2", "iou_1", "iou_2"]
    assert "per volume in 3D" in summary["metric_note"] and "1 = Anterior" in summary["metric_note"]
    assert (out / "examples.png").is_file() and (out / "runs/tpp/seed0/examples.npz").is_file()
    test = summary["arms"]["tpp"]["runs"][0]["test"]
    assert all(0 <= test[k] <= 1 for k in ("dice", "dice_1", "iou_2"))
    assert np.isclose(test["dice"], (test["dice_1"] + test["dice_2"]) / 2)



def test_few_labels_are_whole_volumes(tmp_path):
    """data.label_fraction with 3D segmentation slice by slice labels a fraction of the training volumes, every
    slice of each; the summary counts the volumes and the report says so."""
    from tppeft.config import load_config
    from tppeft.experiment.context import prepare_context
    from tppeft.reporting.report import data_text

    root = write_msd(tmp_path / "msd", n=10)
    cfg = load_config(None, ["threads=1", "data.image_size=32", f"data.path={root}", "data.label_fraction=0.5"])
    ctx = prepare_context(cfg, log=lambda s: None)
    groups = ctx.data["train"].label_groups()
    volumes = len(torch.unique(groups))
    for seed in (0, 1, 2):
        chosen = ctx.labelled(seed)
        picked = torch.unique(groups[chosen])
        assert len(picked) == -(-volumes // 2) and len(chosen) == int(torch.isin(groups, picked).sum())
    assert ctx.labelled_volumes() == -(-volumes // 2) and ctx.num_labelled() == len(ctx.labelled(0))
    text = data_text({"split_sizes": {"train": len(groups)},
                      "data": {"train": ctx.num_labelled(), "pretext_train": len(groups), "label_fraction": 0.5,
                               "labelled_volumes": ctx.labelled_volumes()}})
    assert text.startswith(f"Fine-tuning saw the slices of {-(-volumes // 2)} labelled training volumes (50% of them")


def test_whole_volume_draws_fine_tune_on_their_own_slices_and_charge_each_run_its_own_epochs(tmp_path):
    """Whole volumes drawn per seed differ in slices: each run fine-tunes on its own seed's slices (all of them,
    every epoch), and baseline_matched charges each run the stage in that run's own epochs, so no run gets less
    and a run's budget does not depend on how many seeds the comparison has."""
    import math

    from tppeft.engine.loop import epoch_steps
    from tppeft.experiment.budget import images_per_epoch

    root = write_msd(tmp_path / "msd", n=10, shapes=[(10, 12, 6 + 3 * (i % 4)) for i in range(10)])
    out = tmp_path / "run"
    sets = ["pretext.probe=false", "threads=1", "seeds=3", "arms=[baseline, baseline_matched]", "pretext.epochs=1",
            "pretext.batch_size=8", "finetune.epochs=1", "finetune.batch_size=4", "data.image_size=16",
            "data.label_fraction=0.3", f"data.path={root}"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["data"]["train_per_seed"]
    assert len(set(counts)) > 1 and summary["data"]["train"] == counts[0]  # the draws differ in slices
    budget = summary["baseline_matched"]
    assert budget["finetune_images_per_epoch"] == counts[0]
    stage_flops = budget["tpp_stage_in_finetune_epochs"] * budget["finetune_flops_per_epoch"]
    own = {str(s): math.ceil(stage_flops / (budget["finetune_flops_per_image_step"] * images_per_epoch(n, 4)) - 1e-9)
           for s, n in enumerate(counts)}
    assert budget["extra_epochs_per_seed"] == own  # each seed's own slices, not the fewest of the seeds run
    assert [r["finetune_epochs"] for r in summary["arms"]["baseline_matched"]["runs"]] == [1 + own[str(s)]
                                                                                         for s in range(3)]
    for arm in ("baseline", "baseline_matched"):
        for run in summary["arms"][arm]["runs"]:
            lines = (out / "runs" / arm / f"seed{run['seed']}" / "metrics.jsonl").read_text().splitlines()
            end = [r for r in map(json.loads, lines) if r.get("stage") == "finetune" and r.get("event") == "end"]
            assert end[0]["steps"] == run["finetune_epochs"] * epoch_steps(counts[run["seed"]], 4)[0]


def test_bundled_volume_configs():
    from tppeft.bundled import bundled_configs
    from tppeft.config import load_config

    configs = bundled_configs()
    slice_wise = load_config(configs["hippocampus"])
    assert slice_wise.task.type == "segmentation3d" and slice_wise.backbone.dims == 2
    assert slice_wise.task.neighbour_slices == 1 and slice_wise.data.path == "data/hippocampus"
    for name, task in (("hippocampus_vit3d", "segmentation3d"), ("adrenalmnist3d_vit3d", "volume")):
        cfg = load_config(configs[name])
        assert cfg.backbone.dims == 3 and cfg.task.type == task and cfg.pretext.method == "mae"
