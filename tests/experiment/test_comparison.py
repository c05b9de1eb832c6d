"""What a comparison records of each run (the runs themselves are tested through the command line)."""

from tppeft.experiment.comparison import run_seconds


def test_a_runs_seconds_are_its_wall_time_or_its_stages_after_a_resume():
    ft, tpp = {"seconds": 30.0}, {"seconds": 50.0, "head_warmup": {"seconds": 5.0}}
    assert run_seconds(100.0, ft, tpp) == 100.0  # one process: its wall time covers the stages
    assert run_seconds(40.0, ft, tpp) == 85.0  # resumed: the stages' seconds count across resumes
    assert run_seconds(10.0, ft, None) == 30.0 and run_seconds(10.0, ft, {"seconds": 5.0}) == 35.0


def test_a_comparison_counts_the_images_its_splits_share_and_the_report_says_so(tmp_path):
    import numpy as np
    from conftest import write_medmnist

    from tppeft.config import load_config
    from tppeft.experiment.comparison import comparison_meta
    from tppeft.experiment.context import prepare_context
    from tppeft.reporting.report import _split_copies_para

    path = write_medmnist(tmp_path / "toy.npz", n=(12, 6, 6), size=16)
    arrays = dict(np.load(path))
    arrays["val_images"][0] = arrays["train_images"][3]  # a validation image that is a training image
    arrays["test_images"][:2] = arrays["train_images"][4:6]  # and two test images
    arrays["val_images"][1] = arrays["train_images"][7] // 2 + 40  # darker, less contrast: a near-twin, not a copy
    np.savez(path, **arrays)
    notes: list[str] = []
    cfg = load_config(None, [f"data.path={path}", "data.image_size=32", "threads=1"])
    meta, _ = comparison_meta(cfg, prepare_context(cfg, notes.append), notes.append)
    assert meta["data"]["split_copies"] == {"val in train": 1, "test in train": 2, "test in val": 0}
    assert meta["data"]["split_near_copies"] == {"min_correlation": 0.98, "test_without_twin_in_train": 4,
                                                 "counts": {"val in train": 2, "test in train": 2, "test in val": 0}}
    sentence = ("1 of the 6 val images is a copy of a train image and 2 of the 6 test images are copies of train "
                "images, pixel for pixel at the model's input size; 2 of the 6 val images have a near-twin among the "
                "train images and 2 of the 6 test images have a near-twin among the train images (near-twins")
    assert any(sentence in n for n in notes)
    assert sentence in _split_copies_para(meta)
    meta["data"]["split_copies"] = {"val in train": 0, "test in train": 0, "test in val": 0}
    assert _split_copies_para(meta).startswith("2 of the 6 val images have a near-twin")  # near-twins alone
    meta["data"]["split_near_copies"]["counts"] = dict.fromkeys(meta["data"]["split_copies"], 0)
    assert _split_copies_para(meta) is None and _split_copies_para({}) is None  # disjoint: nothing said


def test_a_comparison_scores_tpp_on_the_test_images_without_a_twin_in_training(tmp_path):
    """Each run's test metrics on the test images without a near-twin among the training images (the stage saw
    every training image), their paired differences in summary.json and a sentence of the report."""
    import json

    import numpy as np
    from conftest import tiny_config, write_medmnist

    from tppeft.cli import main
    from tppeft.tasks.classification import classification_metrics

    path = write_medmnist(tmp_path / "toy.npz", n=(16, 8, 10), size=16)
    arrays = dict(np.load(path))
    arrays["test_images"][:3] = arrays["train_images"][5:8] // 2 + 60  # darker copies: near-twins
    np.savez(path, **arrays)
    out = tmp_path / "run"
    sets = tiny_config()[1] + [f"data.path={path}", "data.limit=null", "data.image_size=32", "peft.targets=[qkv]",
                               "threads=1", "arms=[baseline, tpp]"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    keep = np.ones(10, bool)
    keep[:3] = False
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        z = np.load(out / "runs" / r["arm"] / f"seed{r['seed']}" / "test_scores.npz")
        assert r["test_without_twin"] == classification_metrics(z["labels"][keep], z["scores"][keep], "binary-class")
        assert r["test"]["auc"] == classification_metrics(z["labels"], z["scores"], "binary-class")["auc"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["split_near_copies"]["test_without_twin_in_train"] == 7
    d = summary["paired_without_twin"]["tpp-baseline"]["auc"]
    by_seed = {a: [r["test_without_twin"]["auc"] for r in summary["arms"][a]["runs"]] for a in ("tpp", "baseline")}
    assert d["n"] == 2 and np.allclose(list(d["per_seed"].values()), np.subtract(*by_seed.values()))
    assert np.isclose(summary["arms"]["tpp"]["mean_without_twin"]["auc"], np.mean(by_seed["tpp"]))
    assert "On the 7 test images without a near-twin among the training images" in (out / "report.md").read_text()


def test_a_comparison_on_b0_scores_tpp_on_the_test_images_b0_never_saw(tmp_path):
    """Where the backbone's pool keys hold some test images (here BreastMNIST training images b0 saw, beside new
    ones), each run scores the others too, and summary.json and the report pair them."""
    import json

    import numpy as np
    from conftest import tiny_config

    from tppeft.bundled import resolve
    from tppeft.cli import main
    from tppeft.tasks.classification import classification_metrics

    breast = np.load(resolve("bundled:breastmnist"))
    rng = np.random.default_rng(0)
    fresh = rng.integers(0, 256, (14, 28, 28), dtype=np.uint8)  # images no pool holds
    labels = np.array([[0], [1]] * 8)
    path = tmp_path / "toy.npz"
    np.savez(path, train_images=breast["train_images"][:16], train_labels=labels,
             val_images=fresh[:6], val_labels=labels[:6],
             test_images=np.concatenate([breast["train_images"][16:20], fresh[6:]]), test_labels=labels[:12])
    out = tmp_path / "run"
    sets = tiny_config()[1] + [f"data.path={path}", "data.limit=null", "peft.targets=[qkv]", "threads=1",
                               "arms=[baseline, tpp]"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    unseen = np.arange(12) >= 4
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        z = np.load(out / "runs" / r["arm"] / f"seed{r['seed']}" / "test_scores.npz")
        assert r["test_unseen_by_backbone"] == classification_metrics(z["labels"][unseen], z["scores"][unseen],
                                                                      "binary-class")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backbone_saw_images"]["test"] == [4, 12] and summary["backbone_saw_images"]["train"] == [16, 16]
    d = summary["paired_unseen_by_backbone"]["tpp-baseline"]["auc"]
    by_seed = {a: [r["test_unseen_by_backbone"]["auc"] for r in summary["arms"][a]["runs"]]
               for a in ("tpp", "baseline")}
    assert d["n"] == 2 and np.allclose(list(d["per_seed"].values()), np.subtract(*by_seed.values()))
    assert np.isclose(summary["arms"]["tpp"]["mean_unseen_by_backbone"]["auc"], np.mean(by_seed["tpp"]))
    assert "On the 8 of 12 test images the backbone never saw in pre-training" in (out / "report.md").read_text()
