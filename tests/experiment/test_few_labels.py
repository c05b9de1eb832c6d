"""Few labels and more unlabelled images: the labelled subset fine-tuning sees, pretext.data, the pretext head
warm-up and the TPP diagnostics (linear probe, movement) in the run records."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_image_folder

from tppeft.cli import main
from tppeft.config import ConfigError, load_config
from tppeft.errors import DataError
from tppeft.experiment.budget import matched_budget
from tppeft.experiment.context import prepare_context
from tppeft.experiment.model import build_run_model
from tppeft.experiment.pretext_stage import head_warmup
from tppeft.pretext import get_pretext
from tppeft.reporting.report import data_text

SMALL = ["data.limit=40", "data.image_size=32", "peft.targets=[qkv]", "threads=1", "pretext.batch_size=8",
         "finetune.batch_size=8"]


def _sets(*extra):
    return [a for s in [*tiny_config()[1], *SMALL, "seeds=1", *extra] for a in ("--set", s)]


def _ctx(*extra):
    return prepare_context(load_config(None, [*tiny_config()[1], *SMALL, *extra]), log=lambda s: None)


def test_labelled_subset_is_stratified_per_seed_and_counted_once():
    ctx = _ctx("data.label_fraction=0.25")
    labels = ctx.data["train"].labels.cpu().numpy()
    first, second = ctx.labelled(0).numpy(), ctx.labelled(1).numpy()
    assert len(first) == len(second) == ctx.num_labelled() < len(labels)
    assert not np.array_equal(first, second) and np.array_equal(first, ctx.labelled(0).numpy())
    for c in np.unique(labels):  # every class keeps about a quarter of its images
        assert sum(labels[first] == c) == max(1, round(0.25 * sum(labels == c)))
    per_class = _ctx("data.labels_per_class=3")
    assert np.bincount(labels[per_class.labelled(0).numpy()]).tolist() == [3, 3]
    assert _ctx().labelled(0) is None and _ctx().num_labelled() == len(labels)  # neutral: all of them


def test_few_labels_run_uses_the_subset_and_says_so(tmp_path):
    out = tmp_path / "few"
    assert main(["run", "-o", str(out), *_sets("data.label_fraction=0.25", "pretext.probe=true")]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["data"]["train"] == _ctx("data.label_fraction=0.25").num_labelled() < 40
    assert s["data"]["pretext_train"] == 40 and s["split_sizes"]["train"] == 40  # TPP sees every training image
    steps = [r["pretext"]["steps"] for r in s["arms"]["tpp"]["runs"]]
    assert steps == [40 // 8]  # an epoch of the TPP stage covers all 40 images
    report = (out / "report.md").read_text()
    assert f"Fine-tuning saw a labelled subset of {s['data']['train']} training images (25% per class" in report
    assert "## Did the TPP stage improve the features before any label?" in report
    assert "`tpp`: the TPP stage raised the probe on validation in " in report and " of 1 seeds" in report
    # baseline_matched's budget counts the labelled images of a fine-tuning epoch: few labels, more extra epochs
    few, every = matched_budget(_ctx("data.label_fraction=0.25")), matched_budget(_ctx())
    assert few["finetune_flops_per_epoch"] < every["finetune_flops_per_epoch"]
    assert few["extra_epochs"] > every["extra_epochs"]


def test_pretext_data_adds_training_images_to_the_tpp_stage_only(tmp_path):
    extra = tmp_path / "more.npz"
    rng = np.random.default_rng(0)
    np.savez(extra, train_images=rng.integers(0, 256, (12, 20, 20), dtype=np.uint8),
             train_labels=np.zeros((12, 1), np.int64))
    ctx = _ctx(f"pretext.data=[{{path: {extra}, splits: [train]}}]")
    assert ctx.num_pretext_images() == 52 and ctx.num_labelled() == 40
    mixed = ctx.pretext_batch(torch.tensor([0, 45, 3, 51]))
    assert mixed.shape == (4, 3, 32, 32)
    assert torch.equal(mixed[[0, 2]], ctx.batch("train", torch.tensor([0, 3])))  # the split's own, unchanged
    with pytest.raises(ConfigError, match="training splits only"):
        load_config(None, [f"pretext.data=[{{path: {extra}, splits: [train, test]}}]"])
    with pytest.raises(ConfigError, match="the run's own data"):
        _ctx("data.path=bundled:breastmnist", "pretext.data=[{path: bundled:breastmnist, splits: [train]}]")


def test_pretext_data_never_holds_the_runs_validation_or_test_images(tmp_path):
    """Exact copies of the run's own images in pretext.data: test or validation ones are refused, training ones
    are counted (the stage then sees them twice per epoch) and said in the report's data line."""
    data = _ctx().data
    stored = {split: data[split].images[:, 0].cpu().numpy() for split in ("train", "val", "test")}
    rng = np.random.default_rng(1)
    for split in ("test", "val"):
        leaky = tmp_path / f"{split}.npz"
        np.savez(leaky, train_images=np.concatenate([rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
                                                     stored[split][3:5]]))
        with pytest.raises(ConfigError, match=f"2 images of {leaky} are the run's {split} images"):
            _ctx(f"pretext.data=[{{path: {leaky}, splits: [train]}}]")
    again = tmp_path / "again.npz"
    blank = np.full((2, 28, 28), 7, np.uint8)  # constant images match nothing, wherever they are
    np.savez(again, train_images=np.concatenate([stored["train"][:3], blank, stored["train"][-1:]]))
    lines: list[str] = []
    cfg = load_config(None, [*tiny_config()[1], *SMALL, f"pretext.data=[{{path: {again}, splits: [train]}}]"])
    ctx = prepare_context(cfg, log=lines.append)
    assert ctx.pretext_sources[0]["also_in_train"] == 4 and ctx.num_pretext_images() == 46
    assert "pretext.data: 4 images of again.npz are also in the run's training split" in "\n".join(lines)
    summary = {"split_sizes": {"train": 40}, "data": {"train": 40, "pretext_train": 46,
                                                      "pretext_sources": ctx.pretext_sources}}
    assert "6 of them from pretext.data (4 of those are training images of the run's own file too" in \
        data_text(summary)
    # pretext.drop_train_copies leaves them out: the stage sees each training image once per epoch
    lines.clear()
    cfg = load_config(None, [*tiny_config()[1], *SMALL, f"pretext.data=[{{path: {again}, splits: [train]}}]",
                             "pretext.drop_train_copies=true"])
    ctx = prepare_context(cfg, log=lines.append)
    (src,) = ctx.pretext_sources
    assert (src["left_out_train_copies"], src["also_in_train"], src["images"]) == (4, 0, 2)
    assert ctx.num_pretext_images() == 42 and torch.allclose(ctx.pretext_extra, torch.tensor(7 / 255))  # the blanks
    assert "4 images of again.npz are the run's training images; left out" in "\n".join(lines)
    summary["data"].update(pretext_train=42, pretext_sources=ctx.pretext_sources)
    assert data_text(summary).endswith("42 unlabelled images, 2 of them from pretext.data (4 copies of the run's "
                                       "training images in pretext.data left out).")
    # pretext.data[].limit: evenly spaced images of the file (0, 5 of the six: a copy and the last copy)
    ctx = prepare_context(load_config(None, [*tiny_config()[1], *SMALL, f"pretext.data=[{{path: {again}, limit: 2}}]"]),
                          log=lines.append)
    (src,) = ctx.pretext_sources
    assert (src["limit"], src["images"], src["also_in_train"], ctx.num_pretext_images()) == (2, 2, 2, 42)
    missing = f"pretext.data=[{{path: {tmp_path / 'nope.npz'}, splits: [train]}}]"
    with pytest.raises(DataError, match="pretext.data: .* does not exist"):
        prepare_context(load_config(None, [*tiny_config()[1], *SMALL, missing]), log=lines.append)


def test_pretext_data_reads_a_folder_of_images_as_the_run_reads_its_own(tmp_path):
    """A folder in pretext.data is decoded as the image-folder reader decodes the run's own folder: its test images,
    pointed at as a plain folder, are refused pixel for pixel; other images are added; the run's own folder too."""
    run = write_image_folder(tmp_path / "run", counts=(10, 4, 4), size=20)
    sets = [f"data.path={run}", "data.image_size=32", "peft.targets=[qkv]", "threads=1", "pretext.batch_size=8"]
    with pytest.raises(ConfigError, match=r"8 images of .*test are the run's test images"):
        _ctx(*sets, f"pretext.data=[{{path: {run / 'test'}}}]")
    with pytest.raises(ConfigError, match="the run's own data"):
        _ctx(*sets, f"pretext.data=[{{path: {run}}}]")
    more = write_image_folder(tmp_path / "more", counts=(3, 0, 0), size=24, splits=False, seed=5)
    ctx = _ctx(*sets, f"pretext.data=[{{path: {more}}}]")
    (src,) = ctx.pretext_sources
    assert (src["images"], src["also_in_train"], src["splits"]) == (6, 0, {"train": 6})
    assert ctx.num_pretext_images() == 26 and ctx.pretext_extra.shape == (6, 1, 32, 32)


def test_the_tracked_learning_rate_follows_the_images_each_stage_steps_through(tmp_path, capsys):
    """With few labels and pretext.data, the learning rate written to TensorBoard is the schedule's over the
    labelled subset (fine-tuning) and over the stage's images (TPP), not over the training split."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tppeft.tracking import scheduled_lr

    extra = tmp_path / "more.npz"
    np.savez(extra, train_images=np.random.default_rng(0).integers(0, 256, (40, 20, 20), dtype=np.uint8))
    out = tmp_path / "out"
    main(["run", *_sets("arms=[tpp]", "data.labels_per_class=3", f"pretext.data=[{{path: {extra}}}]",
                        "pretext.epochs=2", "finetune.epochs=2", "log.tensorboard=true"), "-o", str(out)])
    assert "2 epochs over 80 images (20 steps of 8; 160 image-passes)" in capsys.readouterr().err
    board = EventAccumulator(str(out / "runs" / "tpp" / "seed0" / "tensorboard")).Reload()
    cfg = load_config(None, [*tiny_config()[1], *SMALL])
    for stage, items in (("finetune", 6), ("pretext", 80)):  # 3 labels x 2 classes; 40 + 40 images
        section = getattr(cfg, stage)
        logged = [e.value for e in board.Scalars(f"{stage}/lr")]
        assert logged == pytest.approx([scheduled_lr(section.lr, 2, 8, section.warmup_epochs, items, e)
                                        for e in (1, 2)])
        assert logged != pytest.approx([scheduled_lr(section.lr, 2, 8, section.warmup_epochs, 40, e) for e in (1, 2)])


def test_head_warm_up_leaves_the_target_parameters_alone_and_the_probe_reads_them(tmp_path):
    """With no TPP epochs after a head warm-up, tpp must still equal baseline: the warm-up trained the head only."""
    out = tmp_path / "warm"
    assert main(["run", "-o", str(out), *_sets("pretext.epochs=0", "pretext.head_warmup_epochs=1",
                                                "pretext.decoder=fresh", "pretext.probe=true")]) == 0
    s = json.loads((out / "summary.json").read_text())
    tpp, base = s["arms"]["tpp"]["runs"][0], s["arms"]["baseline"]["runs"][0]
    assert tpp["test"] == base["test"]
    pre = tpp["pretext"]
    assert pre["head_warmup"]["epochs"] == 1 and pre["head_warmup"]["loss_end"] < pre["loss_start"]
    assert pre["probe_before"] == pre["probe_after"] and pre["probe_before"]["metric"] == "auc"
    assert pre["movement"]["change_norm"] == 0.0 and pre["movement"]["lora_update_ratio"]["max"] == 0.0


def test_an_ema_teacher_follows_the_head_through_its_warm_up(tmp_path):
    """DINO's teacher is an EMA of the student's head too: during the head warm-up it moves towards the warmed head
    (else the stage proper starts from a teacher with the random head), while the frozen target parameters' copies
    stay as they were."""
    ctx = _ctx("pretext.method=dino", "pretext.head_warmup_epochs=1", "pretext.views.local_crops=0")
    run = build_run_model(ctx, 0)
    cfg = ctx.stage_config()
    task = get_pretext(cfg)(ctx.backbone, run.vit, cfg)
    before = {n: t.clone() for n, t in task.teacher.shadow().items()}
    head_warmup(ctx, run, task, cfg, 0, tmp_path, "t")
    moved = {n for n, t in task.teacher.shadow().items() if not torch.equal(t, before[n])}
    assert moved == {n for n in before if n.startswith("head.")} and len(moved) < len(before)
    # a warm-up found done (a resumed stage) restores the teacher and DINO's centre as it left them
    rerun = build_run_model(ctx, 0)
    again = get_pretext(cfg)(ctx.backbone, rerun.vit, cfg)
    head_warmup(ctx, rerun, again, cfg, 0, tmp_path, "t")
    assert all(torch.equal(t, task.teacher.shadow()[n]) for n, t in again.teacher.shadow().items())
    assert torch.equal(again.criterion.center, task.criterion.center)


def test_a_stage_given_in_steps_runs_whole_epochs_of_its_images_and_is_charged_for_them(tmp_path, capsys):
    """pretext.steps over 52 stage images (40 + 12 from pretext.data) in steps of 8: 6 steps an epoch, so 13 steps
    are 3 epochs (18 steps) and a head warm-up of 7 steps is 2 epochs; baseline_matched pays for those epochs."""
    extra = tmp_path / "more.npz"
    np.savez(extra, train_images=np.random.default_rng(0).integers(0, 256, (12, 20, 20), dtype=np.uint8),
             train_labels=np.zeros((12, 1), np.int64))
    more = f"pretext.data=[{{path: {extra}, splits: [train]}}]"
    steps = ("pretext.steps=13", "pretext.warmup_steps=3", "pretext.head_warmup_steps=7", "pretext.decoder=fresh")
    out = tmp_path / "steps"
    assert main(["run", "-o", str(out), *_sets(more, *steps, "arms=[tpp]", "pretext.probe=false")]) == 0
    assert "3 epochs over 52 images (18 steps of 8, pretext.steps 13 rounded up" in capsys.readouterr().err
    pre = json.loads((out / "summary.json").read_text())["arms"]["tpp"]["runs"][0]["pretext"]
    assert (pre["epochs"], pre["steps"], pre["head_warmup"]["epochs"]) == (3, 18, 2)
    in_steps = matched_budget(_ctx(more, *steps))
    in_epochs = matched_budget(_ctx(more, "pretext.epochs=3", "pretext.head_warmup_epochs=2", "pretext.decoder=fresh"))
    assert in_steps["tpp_stage_in_finetune_epochs"] == in_epochs["tpp_stage_in_finetune_epochs"]
    assert in_steps["extra_epochs"] == in_epochs["extra_epochs"] > 0


def test_head_warm_up_needs_a_head_to_train(tmp_path, capsys):
    code = main(["run", "-o", str(tmp_path / "frozen"), *_sets("pretext.head_warmup_epochs=1",
                                                               "pretext.decoder=pretrained")])
    assert code == 2 and "has no head to train" in capsys.readouterr().err
    assert not (tmp_path / "frozen").exists()  # refused before anything was written
