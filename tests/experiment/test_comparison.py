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
    assert meta["data"]["split_near_copies"] == {"min_correlation": 0.98,
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
