"""`tppeft compare --pair`: seed-paired differences between any two arms, of one run or of two runs whose seeds
saw the same labelled and test images."""

import pytest

from tppeft.cli import main
from tppeft.config import load_config
from tppeft.experiment.comparison import summarize
from tppeft.io import config_to_yaml, write_json
from tppeft.reporting.across import differences, parse_pair
from tppeft.reporting.compare import write_compare
from tppeft.reporting.report import ReportError


def run_folder(path, auc: dict[str, list[float]], sets: list[str], digests: dict[str, str] | None = None,
               label_digests: dict[str, str] | None = None):
    """A finished comparison's config.yaml and summary.json (test and validation AUC per arm and seed; with
    ``digests``, the SHA-256 of each split it recorded, with ``label_digests`` that of each split's labels)."""
    arms = list(auc)
    cfg = load_config(None, [f"arms=[{', '.join(arms)}]", f"seeds={len(auc[arms[0]])}", *sets])
    records = [{"arm": a, "seed": s, "test": {"acc": 0.5, "auc": v}, "val": {"acc": 0.5, "auc": v - 0.1},
                "seconds": 1.0, "best_epoch": 1, "finetune_epochs": cfg.finetune.epochs, "pretext": None}
               for a in arms for s, v in enumerate(auc[a])]
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(config_to_yaml(cfg))
    data = {**({"split_sha256": digests} if digests else {}),
            **({"label_sha256": label_digests} if label_digests else {})}
    meta = {"dataset": "breastmnist", "task": "classification", **({"data": data} if data else {})}
    write_json(path / "summary.json", summarize(records, cfg, meta, ["acc", "auc"], "auc"))
    return path


def _row(text: str, comparison: str, split: str, metric: str = "AUC") -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:3] == [comparison, split, metric]:
            return cells
    raise AssertionError(f"no row {comparison} {split} {metric} in:\n{text}")


def test_arms_of_two_runs_are_paired_seed_by_seed(tmp_path):
    short = run_folder(tmp_path / "short", {"baseline": [0.80, 0.82, 0.81], "tpp": [0.84, 0.83, 0.85]},
                       ["finetune.epochs=15"])
    long = run_folder(tmp_path / "long", {"baseline": [0.86, 0.85, 0.88], "tpp": [0.88, 0.88, 0.86]},
                      ["finetune.epochs=73"])
    text = write_compare([short, long], None, ["2:tpp,1:tpp", "2:baseline,2:tpp"])
    row = _row(text, "tpp @2 − tpp @1", "test")
    assert row[3].startswith("+0.033") and row[5] == "3/0/0" and row[7] == "tpp @2 better (only 3 seeds: weak)"
    assert _row(text, "tpp @2 − tpp @1", "val")[3].startswith("+0.033")  # validation rows too
    within = _row(text, "baseline @2 − tpp @2", "test")  # two arms of one run: any pair, not only TPP − other
    assert within[3].startswith("-0.010") and within[5] == "1/0/2" and within[7] == "no clear difference"
    assert "@1 → @2: finetune.epochs: 15 → 73." in text
    assert "@1 = breastmnist (short); @2 = breastmnist (long)" in text


def test_runs_whose_seeds_saw_other_images_are_not_paired(tmp_path, capsys):
    a = run_folder(tmp_path / "a", {"baseline": [0.8, 0.9], "tpp": [0.8, 0.9]}, ["data.labels_per_class=16"])
    b = run_folder(tmp_path / "b", {"baseline": [0.8, 0.9], "tpp": [0.8, 0.9]}, ["data.labels_per_class=8"])
    with pytest.raises(ReportError, match=r"cannot be paired by seed: they differ in data\.labels_per_class"):
        write_compare([a, b], None, ["1:tpp,2:tpp"])
    assert main(["compare", str(a), str(b), "--pair", "1:tpp,2:tpp"]) == 2
    assert "cannot be paired" in capsys.readouterr().err
    with pytest.raises(ReportError, match="no arm 'eva'"):
        write_compare([a], None, ["1:tpp,1:eva"])
    (tmp_path / "a" / "config.yaml").unlink()
    with pytest.raises(ReportError, match="config.yaml"):
        write_compare([a, b], None, ["1:tpp,2:tpp"])


def test_runs_of_two_data_files_pair_on_the_splits_whose_images_are_equal(tmp_path):
    """A second data file with the same training and test images but another validation split: paired on test
    only, by the splits' recorded SHA-256; other training images or another label draw are refused."""
    auc = {"baseline": [0.80, 0.82, 0.81], "tpp": [0.84, 0.83, 0.85]}
    same = {"train": "t1", "val": "v1", "test": "x1"}
    old = run_folder(tmp_path / "old", auc, ["data.path=old.npz", "data.labels_per_class=4"], same)
    new = run_folder(tmp_path / "new", auc, ["data.path=new.npz", "data.labels_per_class=4"], {**same, "val": "v2"})
    text = write_compare([old, new], None, ["2:tpp,1:tpp"])
    assert _row(text, "tpp @2 − tpp @1", "test")[5] == "0/3/0"
    assert not [line for line in text.splitlines() if line.startswith("| tpp @2 − tpp @1 | val")]
    assert "@1 and @2 are paired on test only: their validation images differ (data.split_sha256)." in text
    assert "@1 → @2: data.path: old.npz → new.npz." in text
    for name, sets, digests, why in [
            ("train", ["data.path=old.npz", "data.labels_per_class=4"], {**same, "train": "t2"},
             "their training images"),
            ("draw", ["data.path=old.npz", "data.labels_per_class=8"], same, "they differ in data.labels_per_class"),
            ("scored", ["data.path=old.npz", "data.labels_per_class=4"], {**same, "val": "v2", "test": "x2"},
             "their test and validation images differ")]:
        other = run_folder(tmp_path / name, auc, sets, digests)
        with pytest.raises(ReportError, match=f"cannot be paired by seed: {why}"):
            write_compare([old, other], None, ["2:tpp,1:tpp"])
    # a folder made before the digests were recorded: the config keys decide, so another data.path is refused
    before = run_folder(tmp_path / "before", auc, ["data.path=new.npz", "data.labels_per_class=4"])
    with pytest.raises(ReportError, match=r"they differ in data\.path"):
        write_compare([old, before], None, ["2:tpp,1:tpp"])


def test_two_versions_of_the_same_images_pair_by_their_labels_when_asked(tmp_path, capsys):
    """The same images at another size: every split's images differ, its labels and label draws do not. --pair
    refuses them; --pair-by-labels pairs them and says the images differ; other labels are refused even so."""
    auc = {"baseline": [0.80, 0.82, 0.81], "tpp": [0.84, 0.83, 0.85]}
    labels = {"train": "l1", "val": "l2", "test": "l3"}
    sets = ["data.label_fraction=0.1"]
    small = run_folder(tmp_path / "small", auc, ["data.path=busi_28.npz", *sets],
                       {"train": "a", "val": "b", "test": "c"}, labels)
    large = run_folder(tmp_path / "large", auc, ["data.path=busi_64.npz", *sets],
                       {"train": "d", "val": "e", "test": "f"}, labels)
    with pytest.raises(ReportError, match=r"cannot be paired by seed: their training images differ"):
        write_compare([small, large], None, ["2:tpp,1:tpp"])
    text = write_compare([small, large], None, ["2:tpp,1:tpp"], by_labels=True)
    assert _row(text, "tpp @2 − tpp @1", "test")[5] == "0/3/0" and _row(text, "tpp @2 − tpp @1", "val")
    assert ("@1 and @2 are paired by their labels (--pair-by-labels) although their training, test and validation "
            "images differ (data.split_sha256)") in text
    for name, other_sets, other_labels, why in [
            ("relabelled", sets, {**labels, "train": "l9"}, r"their training labels differ \(data\.label_sha256"),
            ("drawn", ["data.label_fraction=0.2"], labels, r"they differ in data\.label_fraction"),
            ("older", sets, None, r"--pair-by-labels pairs classification comparisons that record")]:
        other = run_folder(tmp_path / name, auc, ["data.path=busi_64.npz", *other_sets],
                           {"train": "d", "val": "e", "test": "f"}, other_labels)
        with pytest.raises(ReportError, match=f"cannot be paired by seed: {why}"):
            write_compare([small, other], None, ["2:tpp,1:tpp"], by_labels=True)
    assert main(["compare", str(small), str(large), "--pair-by-labels"]) == 2
    assert "give --pair N:ARM,M:ARM too" in capsys.readouterr().err


@pytest.mark.parametrize("spec", ["1:tpp", "3:tpp,1:tpp", "0:tpp,1:tpp", "tpp,baseline", "1:tpp,2:tpp,1:tpp"])
def test_a_pair_names_two_sides_by_position(spec):
    with pytest.raises(ReportError, match="--pair"):
        parse_pair(spec, n_runs=2)


def test_a_key_an_older_config_lacks_shows_as_absent():
    older = {"finetune.epochs": 73, "seeds": 5}
    newer = {"finetune.epochs": 73, "seeds": 8, "baseline_matched.stage_shared_by": 8, "pretext.lr": 0.003}
    assert differences(older, newer) == ["baseline_matched.stage_shared_by: absent → 8", "pretext.lr: absent → 0.003"]
    assert differences(newer, {**newer, "pretext.lr": 0.001}) == ["pretext.lr: 0.003 → 0.001"]
    assert differences({"x": 1}, {"x": 1.0}) == []  # equal values, however written
    defaults = {"baseline_matched.stage_shared_by": 1, "pretext.lr": 0.003}  # an older folder ran with these
    assert differences(older, newer, defaults) == ["baseline_matched.stage_shared_by: absent → 8"]


def test_what_differs_names_the_backbone_file_and_leaves_out_keys_added_at_their_default(tmp_path, capsys):
    import json

    auc = {"baseline": [0.80, 0.82], "tpp": [0.84, 0.83]}
    old, new = (run_folder(tmp_path / n, auc, []) for n in ("old", "new"))
    config = (old / "config.yaml").read_text()
    assert "global_pool:" in config
    (old / "config.yaml").write_text(config.replace("  global_pool: null\n", ""))  # written before the key
    for folder, digest in ((old, "c0d21778" * 8), (new, "8ee8f3da" * 8)):
        summary = json.loads((folder / "summary.json").read_text())
        write_json(folder / "summary.json", {**summary, "backbone": {"sha256": digest}})
    assert main(["compare", str(old), str(new), "--pair", "2:tpp,1:tpp"]) == 0
    assert "@1 → @2: backbone file (SHA-256) c0d21778… → 8ee8f3da…." in capsys.readouterr().out
    assert "absent" in write_compare([old, new], None, ["2:tpp,1:tpp"])  # without the defaults: named
