"""Image folders and CSV manifests: layout detection, labels, given and drawn splits, groups, conversions of
mixed files, the cache, and every bad input as one clear error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, write_image_folder, write_medmnist
from PIL import Image

from tppeft.data import DataError, detect_layout, load_dataset
from tppeft.data.config import SplitConfig


def _manifest(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _pngs(folder: Path, n: int, size: int = 12, mode: str = "L") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
        names.append(f"{folder.name}/{i}.png")
    return names


def test_split_image_folder_reads_classes_in_order_and_keeps_uint8(tmp_path):
    root = write_image_folder(tmp_path / "pets", counts=(4, 2, 2), classes=("dog", "cat", "bird"))
    layout = detect_layout(root)
    assert (layout.name, layout.kind) == ("image_folder", "classification")
    logs = []
    ds = load_dataset(root, log=logs.append)
    assert ds.class_names == ["bird", "cat", "dog"] and ds.num_classes == 3 and ds.task == "multiclass"
    assert {s: len(ds[s]) for s in ("train", "val", "test")} == {"train": 12, "val": 6, "test": 6}
    assert ds["train"].images.dtype == torch.uint8 and ds["train"].images.shape[1:] == (1, 16, 16)
    assert ds["train"].labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # class-major, as ImageFolder lists
    # the pixels are the file's: class "dog" (written as class 0 of the generator) is the darkest
    dog = np.array(Image.open(root / "train" / "dog" / "train_0.png"))
    assert torch.equal(ds["train"].images[8, 0], torch.from_numpy(dog))
    assert any("image folder" in line for line in logs) and any("bird, cat, dog" in line for line in logs)
    assert load_dataset(root, limit=2)["train"].labels.tolist() == [0, 2]  # evenly spaced through the split


def test_folder_without_splits_is_split_stratified_and_seeded(tmp_path):
    root = write_image_folder(tmp_path / "flat", counts=(20, 0, 0), splits=False)
    logs = []
    ds = load_dataset(root, split=SplitConfig(val=0.2, test=0.3), log=logs.append)
    sizes = {s: len(ds[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 20, "val": 8, "test": 12}  # per class: 4 val, 6 test of 20
    for s in ("train", "val", "test"):
        assert ds[s].labels.bincount().tolist() == [sizes[s] // 2] * 2
    again = load_dataset(root, split=SplitConfig(val=0.2, test=0.3))
    other = load_dataset(root, split=SplitConfig(val=0.2, test=0.3, seed=1))
    assert torch.equal(again["test"].images, ds["test"].images)
    assert not torch.equal(other["test"].images, ds["test"].images)
    assert any("split made by data.split" in line for line in logs)


def test_missing_val_folder_is_drawn_from_train_and_test_kept(tmp_path):
    root = write_image_folder(tmp_path / "kaggle", counts=(10, 0, 5))
    for d in (root / "val").iterdir():
        d.rmdir()
    (root / "val").rmdir()
    (root / "train").rename(root / "Training")
    (root / "test").rename(root / "Testing")
    ds = load_dataset(root, split=SplitConfig(val=0.2))
    assert {s: len(ds[s]) for s in ("train", "val", "test")} == {"train": 16, "val": 4, "test": 10}


def test_manifest_single_label_split_column_and_paths_relative_to_the_csv(tmp_path):
    names = _pngs(tmp_path / "img", 12)
    labels = ["benign", "malignant", "normal"]
    rows = [{"path": n, "label": labels[i % 3], "split": ("train", "train", "val", "test")[i // 3]}
            for i, n in enumerate(names)]
    csv_path = _manifest(tmp_path / "labels.csv", rows)
    assert detect_layout(csv_path).name == "manifest"
    assert detect_layout(tmp_path).name == "manifest"  # a folder holding one CSV and no class folders
    ds = load_dataset(csv_path)
    assert ds.class_names == labels and len(ds["train"]) == 6 and len(ds["val"]) == 3
    assert ds["val"].labels.tolist() == [0, 1, 2]


def test_manifest_multilabel_from_semicolons_and_from_columns(tmp_path):
    names = _pngs(tmp_path / "img", 20)
    cells = ["effusion;mass", "mass", "", "effusion"]
    rows = [{"path": n, "label": cells[i % 4]} for i, n in enumerate(names)]
    ds = load_dataset(_manifest(tmp_path / "a.csv", rows), split=SplitConfig(val=0.2, test=0.2))
    assert ds.task == "multilabel" and ds.class_names == ["effusion", "mass"]
    assert ds["train"].labels.shape[1] == 2 and set(ds["train"].labels.sum(1).tolist()) == {0, 1, 2}
    rows = [{"path": n, "effusion": i % 2, "mass": (i // 2) % 2} for i, n in enumerate(names)]
    ds = load_dataset(_manifest(tmp_path / "b.csv", rows), split=SplitConfig(val=0.2, test=0.2))
    assert ds.task == "multilabel" and ds.class_names == ["effusion", "mass"] and ds.num_classes == 2


def test_group_by_keeps_each_group_in_one_split(tmp_path):
    names = _pngs(tmp_path / "img", 60)
    rows = [{"path": n, "label": "ab"[i % 2], "patient": f"p{i // 3}"} for i, n in enumerate(names)]
    path = _manifest(tmp_path / "m.csv", rows)
    listing_split = {}
    ds = load_dataset(path, split=SplitConfig(val=0.1, test=0.2, group_by="patient"), log=lambda s: None)
    # which split holds each image: its pixels identify it
    pixels = {n: np.asarray(Image.open(tmp_path / n)) for n in names}
    for s in ("train", "val", "test"):
        for img in ds[s].images[:, 0].numpy():
            name = next(n for n, p in pixels.items() if np.array_equal(p, img))
            listing_split[name] = s
    by_patient: dict[str, set[str]] = {}
    for r in rows:
        by_patient.setdefault(r["patient"], set()).add(listing_split[r["path"]])
    assert all(len(s) == 1 for s in by_patient.values())
    assert {s: len(ds[s]) for s in ("train", "val", "test")} == {"train": 42, "val": 6, "test": 12}


def test_mixed_files_are_converted_and_said_once(tmp_path):
    root = tmp_path / "mixed"
    _pngs(root / "train" / "a", 3, size=10)
    _pngs(root / "train" / "b", 3, size=14, mode="RGB")
    deep = (np.arange(100).reshape(10, 10) * 600).astype(np.uint16)
    Image.fromarray(deep).save(root / "train" / "a" / "deep.png")  # 16-bit grey
    Image.new("RGBA", (10, 10), (10, 20, 30, 40)).save(root / "train" / "b" / "alpha.png")
    for s in ("val", "test"):
        _pngs(root / s / "a", 1, size=10)
        _pngs(root / s / "b", 1, size=10, mode="RGB")
    logs = []
    ds = load_dataset(root, size=8, log=logs.append)
    assert ds["train"].images.shape == (8, 3, 8, 8) and ds["val"].images.shape == (2, 3, 8, 8)
    notes = [line for line in logs if "converted on reading" in line]
    assert len(notes) == 1
    for said in ("grey image(s) replicated to 3 channels", "alpha dropped", "more than 8 bits", "resized to 8x8"):
        assert said in notes[0]
    one_size = load_dataset(root, log=lambda s: None, size=None)  # no input size: the most common size
    assert one_size["train"].images.shape[-2:] == (10, 10)
    deep_read = ds["train"].images[3]  # the 16-bit image, scaled by its own range (then resized)
    assert int(deep_read.min()) <= 10 and int(deep_read.max()) >= 245


def test_cache_is_written_once_and_read_memory_mapped(tmp_path):
    root = write_image_folder(tmp_path / "data", counts=(4, 2, 2))
    cache = tmp_path / "cache"
    logs = []
    first = load_dataset(root, cache=True, cache_dir=str(cache), log=logs.append)
    files = list(cache.glob("*.npy"))
    assert len(files) == 1 and not list(cache.glob("*.partial"))
    stamp = files[0].stat().st_mtime_ns
    again = load_dataset(root, cache=True, cache_dir=str(cache), log=logs.append)
    assert files[0].stat().st_mtime_ns == stamp and any("read from the cache" in line for line in logs)
    for s in ("train", "val", "test"):
        assert torch.equal(first[s].images, again[s].images)
        assert torch.equal(first[s].images, load_dataset(root, cache=False)[s].images)
    # a changed file makes a new cache file
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "val" / "cat" / "val_0.png")
    load_dataset(root, cache=True, cache_dir=str(cache))
    assert len(list(cache.glob("*.npy"))) == 2


def test_auto_caches_only_what_does_not_fit(tmp_path, monkeypatch):
    import tppeft.data.cache as cache_mod

    root = write_image_folder(tmp_path / "data", counts=(2, 1, 1))
    monkeypatch.setattr(cache_mod, "available_memory", lambda: 10**12)
    load_dataset(root, cache_dir=str(tmp_path / "c1"))
    assert not (tmp_path / "c1").exists()
    monkeypatch.setattr(cache_mod, "available_memory", lambda: 100)
    load_dataset(root, cache_dir=str(tmp_path / "c2"))
    assert len(list((tmp_path / "c2").glob("*.npy"))) == 1


def test_a_file_that_fails_to_decode_leaves_no_cache(tmp_path):
    root = write_image_folder(tmp_path / "data", counts=(3, 1, 1))
    good = (root / "train" / "cat" / "train_0.png").read_bytes()
    (root / "train" / "cat" / "train_0.png").write_bytes(good[: len(good) // 2])  # header intact, data cut
    with pytest.raises(DataError, match=r"1 file\(s\) cannot be decoded: train/cat/train_0.png"):
        load_dataset(root, cache=True, cache_dir=str(tmp_path / "cache"))
    assert not list((tmp_path / "cache").glob("*"))


BAD = [
    ("class folders in a folder with images/ and masks/",
     lambda t: (write_image_folder(t / "d"), (t / "d" / "train" / "images").mkdir())[0],
     ["ambiguous", "accepted layouts"]),
    ("split folders beside other folders", lambda t: (write_image_folder(t / "d"), (t / "d" / "extra").mkdir())[0],
     ["ambiguous", "extra"]),
    ("several CSV manifests", lambda t: [(t / n).write_text("path,label\n") for n in ("a.csv", "b.csv")] and t,
     ["ambiguous", "2 CSV manifests"]),
    ("empty class folder", lambda t: (write_image_folder(t / "d"), (t / "d" / "train" / "owl").mkdir())[0],
     ["empty class", "train/owl"]),
    ("class only in val", lambda t: (write_image_folder(t / "d"), _pngs(t / "d" / "val" / "owl", 1))[0],
     ["not in the training split", "val/owl"]),
    ("unreadable files", lambda t: (write_image_folder(t / "d"), *[(t / "d" / "test" / "cat" / f"x{i}.png")
                                                                   .write_text("no") for i in range(5)])[0],
     ["5 file(s) cannot be read as images", "test/cat/x0.png", "and 2 more"]),
]


@pytest.mark.parametrize("case, make, expected", BAD, ids=[c[0] for c in BAD])
def test_bad_folders_are_one_clear_error(case, make, expected, tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(make(tmp_path))
    for part in expected:
        assert part in str(e.value)


def test_bad_manifests_are_one_clear_error(tmp_path):
    names = _pngs(tmp_path / "img", 8)
    rows = [{"path": n, "label": "ab"[i % 2], "split": ("train", "val", "test", "train")[i % 4]}
            for i, n in enumerate(names)]
    missing = rows + [{"path": f"img/gone{i}.png", "label": "a", "split": "train"} for i in range(4)]
    with pytest.raises(DataError, match=r"4 image file\(s\) do not exist: img/gone0.png, img/gone1.png, "
                                         r"img/gone2.png and 1 more"):
        load_dataset(_manifest(tmp_path / "missing.csv", missing))
    unseen = [*rows, {"path": names[0], "label": "c", "split": "test"}]
    with pytest.raises(DataError, match=r"not in the training split: 'c' \(test 1\)"):
        load_dataset(_manifest(tmp_path / "unseen.csv", unseen))
    grouped = [{**r, "group": f"g{i % 2}"} for i, r in enumerate(rows)]
    with pytest.raises(DataError, match=r"2 group\(s\) have images in more than one split: 'g0'"):
        load_dataset(_manifest(tmp_path / "groups.csv", grouped))
    with pytest.raises(DataError, match="'path' column"):
        load_dataset(_manifest(tmp_path / "nopath.csv", [{"file": "x.png", "label": "a"}]))
    with pytest.raises(DataError, match="split value"):
        load_dataset(_manifest(tmp_path / "split.csv", [{**r, "split": "dev"} for r in rows]))
    with pytest.raises(DataError, match="column 'b' holds '7'"):
        load_dataset(_manifest(tmp_path / "cols.csv", [{"path": n, "a": 1, "b": 7} for n in names]))
    with pytest.raises(DataError, match="is not a column"):
        load_dataset(_manifest(tmp_path / "g.csv", rows), split=SplitConfig(group_by="patient"))


def test_task_type_and_the_other_layouts_still_detected(tmp_path):
    root = write_image_folder(tmp_path / "d")
    with pytest.raises(DataError, match="holds classification data but task.type is 'segmentation'"):
        load_dataset(root, kind="segmentation")
    assert detect_layout(write_medmnist(tmp_path / "m.npz")).name == "medmnist"


def test_the_shared_brain_mri_folder_and_its_manifest_agree():
    root = SHARED_DATA / "classification" / "brain_mri"
    if not (root / "labels.csv").is_file():
        pytest.skip("shared brain_mri data not found (set TPPEFT_SHARED_DATA to the shared data folder)")
    folder = load_dataset(root, limit=12)
    manifest = load_dataset(root / "labels.csv", limit=12)
    assert folder.class_names == manifest.class_names == ["glioma", "meningioma", "notumor", "pituitary"]
    for s in ("train", "val", "test"):
        assert torch.equal(folder[s].images, manifest[s].images)
        assert torch.equal(folder[s].labels, manifest[s].labels)
    assert folder["train"].images.shape == (12, 1, 128, 128)


def test_the_bundled_brain_mri_config_reads_the_shared_folder(monkeypatch):
    from tppeft.bundled import bundled_configs
    from tppeft.config import load_config

    cfg = load_config(bundled_configs()["brain_mri"])
    repo = Path(__file__).resolve().parents[2]
    expected = repo.parent / "shared" / "data" / "classification" / "brain_mri"
    assert (repo / cfg.data.path).resolve() == expected.resolve()  # the shared folder may be a link
    if not (repo / cfg.data.path).is_dir():
        pytest.skip("shared brain_mri data not found beside the checkout")
    monkeypatch.chdir(repo)
    assert detect_layout(cfg.data.path).name == "image_folder"
