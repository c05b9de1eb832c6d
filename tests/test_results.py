"""Every result folder kept in the repository is what the command its notes give would run: its config.yaml has
the results identity of that bundled config with those ``--set`` overrides, so a reader can reproduce it."""

import json
import re
import shlex
from pathlib import Path

import pytest

from tppeft.bundled import bundled_configs
from tppeft.config import PretextConfig, load_config
from tppeft.engine.config import results_identity
from tppeft.engine.loop import epoch_steps

RESULTS = Path(__file__).resolve().parents[1] / "results"
FOLDERS = sorted(p.parent for p in RESULTS.rglob("notes.md") if (p.parent / "config.yaml").is_file())


def notes_command(notes: str) -> tuple[str, list[str]]:
    """The bundled config and ``--set`` overrides that the notes' set-up paragraph names: its first
    `tppeft run NAME ...` in backquotes, else its first `configs/NAME.yaml`."""
    setup = notes.split("\n\n")[0].replace("\n", " ")
    command = re.search(r"`tppeft run ([a-z][^`]*)`", setup)
    if command is None:
        named = re.search(r"configs/([a-z0-9_]+)\.yaml", setup)
        assert named, "the notes' set-up paragraph names neither `tppeft run NAME` nor configs/NAME.yaml"
        return named.group(1), []
    words = shlex.split(command.group(1))
    return words[0], [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--set"]


def test_the_command_is_read_from_the_notes():
    text = "**Set-up.** `tppeft run hippocampus --set data.limit=24\n--set threads=1` (or `tppeft run --jobs 2`)"
    assert notes_command(text) == ("hippocampus", ["data.limit=24", "threads=1"])
    assert notes_command("**Set-up.** `configs/study_x.yaml`: ...\n\nlater `tppeft run other`") == ("study_x", [])


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_a_result_folder_is_reproduced_by_the_command_its_notes_give(folder):
    name, sets = notes_command((folder / "notes.md").read_text())
    assert name in bundled_configs(), f"{folder.name}: its notes name '{name}', which is not a bundled config"
    made, kept = (load_config(bundled_configs()[name], sets), load_config(folder / "config.yaml"))
    if pinned := made.backbone.sha256:  # the config names its backbone by digest: the one the result was made on
        used = json.loads((folder / "summary.json").read_text())["backbone"].get("sha256") or ""
        assert used.startswith(pinned), f"{folder.name}: made on backbone {used[:16]}, {name} asks for {pinned[:16]}"
    made, kept = ({**results_identity(c), "seeds": c.seeds} for c in (made, kept))  # the seed count too
    assert made == kept, f"{folder.name}: differs from {name} {sets} in {sorted(k for k in made if made[k] != kept[k])}"


def test_the_recipe_for_ones_own_data_is_the_measured_setting():
    """`few_labels_simclr_long_stage` carries the kept long SimCLR stage to any data: every key but the data's (its
    path and the pool that result drew from) and the thread count is that result's."""
    recipe = load_config(bundled_configs()["few_labels_simclr_long_stage"]).model_dump()
    kept = load_config(RESULTS / "validity" / "brain_mri_few_labels_simclr_many_unlabelled_long" / "config.yaml")
    kept = kept.model_dump()
    for key in ("arms", "seeds", "backbone", "peft", "finetune", "baseline_matched", "train"):
        assert recipe[key] == kept[key], key
    # its lengths are in steps: over the kept stage's 4,317 images in steps of 64 they are that stage's epochs
    images = json.loads((RESULTS / "validity" / "brain_mri_few_labels_simclr_many_unlabelled_long" /
                         "summary.json").read_text())["data"]["pretext_train"]
    steps_per_epoch = epoch_steps(images, kept["pretext"]["batch_size"])[0]  # the training loop's own count
    resolved = PretextConfig(**recipe["pretext"]).in_epochs(steps_per_epoch).model_dump()
    lengths = ("steps", "warmup_steps", "head_warmup_steps", "warmup_epochs")
    assert {k: v for k, v in resolved.items() if k not in ("data", *lengths)} == \
        {k: v for k, v in kept["pretext"].items() if k not in ("data", *lengths)}
    warmup = (round(c["warmup_epochs"] * steps_per_epoch) for c in (resolved, kept["pretext"]))
    assert len(set(warmup)) == 1
    assert images == 4317 and resolved["steps"] == 670 == kept["pretext"]["epochs"] * steps_per_epoch
    assert recipe["data"]["labels_per_class"] == kept["data"]["labels_per_class"] == 16


def test_every_validity_result_has_notes():
    assert len(FOLDERS) >= 7 and all((p / "notes.md").is_file() for p in (RESULTS / "validity").iterdir()
                                     if (p / "summary.json").is_file())


def test_the_stage_table_reads_every_kept_comparison_with_probe_diagnostics(tmp_path):
    """benchmarks/validity/stage_table.py: a row per kept comparison whose tpp runs carry the probe, its numbers
    those of the folder's summary, and a comparison merged from another's tpp runs named as such."""
    import json
    import subprocess
    import sys

    script = RESULTS.parent / "benchmarks" / "validity" / "stage_table.py"
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(script), str(RESULTS), "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["folder"]: r for r in json.loads(out.read_text())}
    one = rows["validity/brain_mri_few_labels_simclr_one_stage"]
    summary = json.loads((RESULTS / one["folder"] / "summary.json").read_text())
    stage = summary["arms"]["tpp"]["runs"][0]["pretext"]
    assert one["stages"] == 1 and one["probe_change"] == stage["probe_after"]["test"] - stage["probe_before"]["test"]
    assert one["probe_val_change"] == stage["probe_after"]["val"] - stage["probe_before"]["val"]
    assert one["tpp-baseline_matched"]["mean"] == summary["paired"]["tpp-baseline_matched"]["auc"]["mean"]
    # each row names its data file: a validation change read on another split says so
    assert one["data"] == "brain_mri_64" and rows["validity/brain_mri_few_labels_simclr_long_val_from_test"]["data"] \
        == "brain_mri_64_valtest"
    shared = rows["validity/brain_mri_few_labels_simclr_shared_stage"]
    assert shared["same_tpp_runs_as"] == "validity/brain_mri_few_labels_simclr_long_finetune"
    assert "probe change on validation (known before any test label is read)" in proc.stdout
    assert "probe change on test (reads test labels" in proc.stdout


def test_the_near_twin_table_splits_the_test_images_by_their_twin_in_training(tmp_path):
    """benchmarks/validity/near_twins.py: test images with a near-twin among the training images and those without,
    each arm's AUC and tpp's paired difference on each group, from the runs' test scores."""
    import subprocess
    import sys

    import numpy as np
    from conftest import write_medmnist

    from tppeft.tasks.classification import classification_metrics

    data = write_medmnist(tmp_path / "toy.npz", n=(12, 6, 8), size=16)
    arrays = dict(np.load(data))
    arrays["test_images"][:2] = arrays["train_images"][:2]  # two copies of training images
    arrays["test_images"][2:4] = arrays["train_images"][2:4] // 2 + 30  # and two near-twins
    arrays["test_labels"][:] = np.array([[0], [1], [0], [1], [0], [1], [0], [1]])
    np.savez(data, **arrays)
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / "config.yaml").write_text(f"data:\n  path: {data}\n")
    labels = arrays["test_labels"].reshape(-1)
    rng = np.random.default_rng(0)
    for arm in ("baseline", "tpp"):
        for seed in range(3):
            p = rng.random(8).astype(np.float32)
            (folder / "runs" / arm / f"seed{seed}").mkdir(parents=True)
            np.savez(folder / "runs" / arm / f"seed{seed}" / "test_scores.npz", scores=np.stack([1 - p, p], 1),
                     labels=labels)
    out = tmp_path / "rows.json"
    script = RESULTS.parent / "benchmarks" / "validity" / "near_twins.py"
    proc = subprocess.run([sys.executable, str(script), str(folder), "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["group"]: r for r in json.loads(out.read_text())}
    assert rows["all"]["images"] == 8 and rows["twin in train (>= 0.98)"]["images"] == 4
    assert rows["no twin in train"]["images"] == 4 and rows["exact copy in train"]["images"] == 2

    def auc(arm, seed, group):
        z = np.load(folder / "runs" / arm / f"seed{seed}" / "test_scores.npz")
        return classification_metrics(z["labels"][group], z["scores"][group], "binary")["auc"]

    twins = np.arange(8) < 4
    for name, group in (("all", np.ones(8, bool)), ("twin in train (>= 0.98)", twins), ("no twin in train", ~twins)):
        diffs = [auc("tpp", s, group) - auc("baseline", s, group) for s in range(3)]
        assert rows[name]["paired"]["baseline"]["mean"] == pytest.approx(np.mean(diffs))
        assert rows[name]["per_class"] == np.bincount(labels[group], minlength=2).tolist()
    assert "| twin in train (>= 0.98) | 4 | 2 / 2 |" in proc.stdout


def test_the_per_class_table_splits_a_multi_class_auc_into_its_classes(tmp_path):
    """benchmarks/validity/per_class.py: each class's one-vs-rest AUC per arm and tpp's paired difference per class,
    from the runs' test scores; their mean is the comparison's own AUC; binary scores are refused."""
    import subprocess
    import sys

    import numpy as np

    from tppeft.tasks.classification import classification_metrics

    folder = tmp_path / "cmp"
    labels = np.arange(12) % 3
    rng = np.random.default_rng(1)
    for arm in ("baseline", "tpp"):
        for seed in range(3):
            (folder / "runs" / arm / f"seed{seed}").mkdir(parents=True)
            p = rng.random((12, 3)).astype(np.float32)
            np.savez(folder / "runs" / arm / f"seed{seed}" / "test_scores.npz", scores=p / p.sum(1, keepdims=True),
                     labels=labels[:, None])
    out = tmp_path / "rows.json"
    script = RESULTS.parent / "benchmarks" / "validity" / "per_class.py"
    proc = subprocess.run([sys.executable, str(script), str(folder), "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["class"] for r in rows] == [0, 1, 2]

    def scores(arm, seed):
        z = np.load(folder / "runs" / arm / f"seed{seed}" / "test_scores.npz")
        return z["labels"], z["scores"]

    for arm in ("baseline", "tpp"):
        whole = np.mean([classification_metrics(*scores(arm, s), "multi-class")["auc"] for s in range(3)])
        assert np.mean([r["means"][arm] for r in rows]) == pytest.approx(whole)
    assert np.mean([r["paired"]["baseline"]["mean"] for r in rows]) == pytest.approx(
        np.mean([r["means"]["tpp"] - r["means"]["baseline"] for r in rows]))
    np.savez(folder / "runs" / "tpp" / "seed0" / "test_scores.npz", scores=np.zeros((12, 2)), labels=labels[:, None])
    refused = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "needs 3 classes" in refused.stderr


def test_the_resolution_table_says_how_small_an_effect_each_comparison_could_see(tmp_path, monkeypatch):
    """benchmarks/validity/resolution.py: per kept paired difference, its seeds, mean and spread, and the smallest
    difference a paired t-test would find with 80% power; a difference another folder lists is named once."""
    import importlib.util
    import json
    import subprocess
    import sys

    script = RESULTS.parent / "benchmarks" / "validity" / "resolution.py"
    monkeypatch.syspath_prepend(str(script.parent))  # its sibling module, as when it runs as a script
    spec = importlib.util.spec_from_file_location("resolution", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # (t(0.975, 7) + t(0.80, 7)) / sqrt(8) = (2.3646 + 0.8960) / 2.8284
    assert module.detectable(1.0, 8) == pytest.approx(1.1528, abs=1e-4) and module.detectable(1.0, 1) is None
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(script), str(RESULTS), "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["folder"], r["pair"]): r for r in json.loads(out.read_text())}
    one = rows[("validity/brain_mri_few_labels_simclr_one_stage", "tpp-baseline_matched")]
    paired = json.loads((RESULTS / one["folder"] / "summary.json").read_text())["paired"]["tpp-baseline_matched"]
    assert one["n"] == paired["auc"]["n"] and one["mean"] == pytest.approx(paired["auc"]["mean"])
    assert one["detectable"] == pytest.approx(module.detectable(one["sd"], one["n"]))
    # the shared-stage folder's tpp and baseline runs are the long fine-tuning study's: listed there only
    assert ("validity/brain_mri_few_labels_simclr_shared_stage", "tpp-baseline") not in rows
    assert ("validity/brain_mri_few_labels_simclr_long_finetune", "tpp-baseline") in rows
    assert "detectable difference median" in proc.stdout
