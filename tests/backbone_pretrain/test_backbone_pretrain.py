"""`tppeft backbone-pretrain`: an image pool from chosen files and splits, MAE from random weights, a checkpoint
that `backbone.checkpoint` loads and that says what it saw."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch
import yaml
from conftest import BREAST, write_image_folder, write_medmnist
from safetensors.torch import load_file

from tppeft.backbones import build_backbone
from tppeft.backbones.seen import seen_by_name
from tppeft.bundled import bundled_configs
from tppeft.cli import main
from tppeft.config import BackboneConfig, ConfigError, load_config
from tppeft.data.config import PoolSourceConfig
from tppeft.data.medmnist import DataError
from tppeft.data.pool import central_slices, load_pool
from tppeft.revision import source_revision

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}


def write_volumes(path, n=(5, 3, 3), depth=8):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, depth, depth, depth), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.zeros((count, 1), dtype=np.uint8)
    np.savez(path, **arrays)
    return path


def write_split_file(path, n=10):
    """The packed-BUSI layout: images plus a per-image split code and the split names."""
    rng = np.random.default_rng(1)
    np.savez(path, images=rng.integers(0, 256, (n, 40, 40), dtype=np.uint8), split=np.arange(n) % 3,
             split_names=np.array(["train", "val", "test"]))
    return path


def test_central_slices_are_the_middle_of_the_first_axis():
    vol = np.arange(2 * 7 * 2 * 2).reshape(2, 7, 2, 2)
    out = central_slices(vol, 3)
    assert out.shape == (6, 2, 2) and np.array_equal(out[0], vol[0, 2]) and np.array_equal(out[5], vol[1, 4])


def test_pool_reads_exactly_the_chosen_splits(tmp_path):
    write_volumes(tmp_path / "vol.npz")
    write_split_file(tmp_path / "packed.npz")
    rgb = write_medmnist(tmp_path / "rgb.npz", n=(4, 2, 2), rgb=True)
    sources = [PoolSourceConfig(path="vol.npz", splits=["train", "val"], slices=2),
               PoolSourceConfig(path="packed.npz", splits=["test"]),
               PoolSourceConfig(path=str(rgb), splits=["train"])]
    pool, record = load_pool(sources, 16, root=str(tmp_path), log=lambda s: None)
    assert pool.shape == (5 * 2 + 3 * 2 + 3 + 4, 3, 16, 16) and 0 <= float(pool.min()) <= float(pool.max()) <= 1
    assert [r["splits"] for r in record] == [{"train": 10, "val": 6}, {"test": 3}, {"train": 4}]
    assert record[0]["slices_per_volume"] == 2 and record[1]["slices_per_volume"] is None
    assert all(len(r["sha256"]) == 64 for r in record)
    with pytest.raises(DataError, match="does not exist"):
        load_pool([PoolSourceConfig(path="nope.npz")], 16, root=str(tmp_path), log=lambda s: None)
    np.savez(tmp_path / "odd.npz", images=np.zeros((2, 8, 8), np.uint8), split=np.zeros(2, int),
             split_names=np.array(["fit"]))
    with pytest.raises(DataError, match="split_names"):
        load_pool([PoolSourceConfig(path=str(tmp_path / "odd.npz"))], 16, log=lambda s: None)
    with pytest.raises(DataError, match="expected MedMNIST keys"):
        np.savez(tmp_path / "bare.npz", x=np.zeros(3))
        load_pool([PoolSourceConfig(path=str(tmp_path / "bare.npz"))], 16, log=lambda s: None)



def test_a_pool_source_limit_takes_evenly_spaced_images_of_each_split(tmp_path):
    """``limit``: N images (volumes) per chosen split, spread over the split as data.limit does; recorded."""
    np.savez(tmp_path / "ramp.npz", train_images=np.repeat(np.arange(10, dtype=np.uint8)[:, None, None] * 20, 4 * 4)
             .reshape(10, 4, 4), val_images=np.zeros((3, 4, 4), np.uint8) + 9)
    lines = []
    pool, record = load_pool([PoolSourceConfig(path="ramp.npz", splits=["train", "val"], limit=4)], 4,
                             root=str(tmp_path), log=lines.append)
    assert record[0]["splits"] == {"train": 4, "val": 3} and record[0]["limit"] == 4
    assert (pool[:4, 0, 0, 0] * 255).round().tolist() == [0, 60, 120, 180]  # images 0, 3, 6, 9 of the ten
    assert "limit 4 per split" in lines[0]
    vol = write_volumes(tmp_path / "vol.npz")
    pool, record = load_pool([PoolSourceConfig(path=str(vol), limit=2, slices=3)], 8, log=lines.append)
    assert record[0]["splits"] == {"train": 6} and len(pool) == 6  # 2 of the 5 volumes, 3 slices each
    _, record = load_pool([PoolSourceConfig(path=str(vol))], 8, log=lines.append)
    assert "limit" not in record[0]
    with pytest.raises(ValueError, match="greater than 0"):
        PoolSourceConfig(path="x.npz", limit=0)


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. torch's on a read-only decoded image
def test_a_pool_source_can_be_a_folder_of_images(tmp_path, monkeypatch):
    """A folder: its split folders are its splits; without them every image at any depth is a training image;
    hidden files are skipped; sizes are unified; ``limit`` applies; the checksum follows names and contents."""
    from PIL import Image

    split = write_image_folder(tmp_path / "split", counts=(4, 2, 3), size=12)
    pool, record = load_pool([PoolSourceConfig(path="split", splits=["train", "test"])], 8, root=str(tmp_path),
                             log=lambda s: None)
    assert record[0]["splits"] == {"train": 8, "test": 6} and pool.shape == (14, 1, 8, 8)
    assert record[0]["slices_per_volume"] is None and len(record[0]["sha256"]) == 64
    monkeypatch.setattr("tppeft.data.pool.READ_CHUNK", 3)  # read a few files at a time: the same images
    again, _ = load_pool([PoolSourceConfig(path="split", splits=["train", "test"])], 8, root=str(tmp_path),
                         log=lambda s: None)
    assert torch.equal(again, pool)
    flat = tmp_path / "flat"
    (flat / "a" / "deeper").mkdir(parents=True)
    (flat / ".hidden").mkdir()
    for i, where in enumerate([flat / "a", flat / "a" / "deeper", flat, flat / ".hidden"]):
        Image.fromarray(np.full((10 + i, 10), 40 * (i + 1), np.uint8)).save(where / f"img{i}.png")
    (flat / "notes.txt").write_text("not an image")
    lines: list[str] = []
    pool, record = load_pool([PoolSourceConfig(path=str(flat))], 8, log=lines.append)
    assert record[0]["splits"] == {"train": 3} and pool.shape == (3, 1, 8, 8)
    assert sorted((pool[:, 0, 4, 4] * 255).round().tolist()) == [40, 80, 120]  # not the hidden one (160)
    assert any("resized" in line for line in lines) and "(image folder)" in lines[-1]
    sha = record[0]["sha256"]
    Image.fromarray(np.full((10, 10), 7, np.uint8)).save(flat / "a" / "img0.png")
    _, record = load_pool([PoolSourceConfig(path=str(flat), limit=2)], 8, log=lambda s: None)
    assert record[0]["sha256"] != sha and record[0]["limit"] == 2 and record[0]["splits"] == {"train": 2}
    with pytest.raises(DataError, match="no train/val/test folders, so every image in it is a training image"):
        load_pool([PoolSourceConfig(path=str(flat), splits=["val"])], 8, log=lambda s: None)
    # a split folder is named with its data set's name, as packed files are, so "did the backbone see it" can tell
    _, record = load_pool([PoolSourceConfig(path=str(split / "train"))], 8, log=lambda s: None)
    assert record[0]["file"] == "split_train" and record[0]["splits"] == {"train": 8}
    assert seen_by_name({"trained_on": record}, "split") == ["split_train"]
    shutil.rmtree(split / "val")
    with pytest.raises(DataError, match="has no val folder"):
        load_pool([PoolSourceConfig(path=str(split), splits=["val"])], 8, log=lambda s: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_pool([PoolSourceConfig(path=str(tmp_path / "empty"))], 8, log=lambda s: None)


def test_backbone_pretrain_then_run_loads_it(tmp_path, capsys):
    vol = write_volumes(tmp_path / "vol.npz")
    recipe = tmp_path / "bp.yaml"
    recipe.write_text(yaml.safe_dump({"threads": 1, "backbone_pretrain": {
        "arch_kwargs": TINY_VIT, "epochs": 2, "batch_size": 64, "base_lr": 1e-3, "save_dtype": "float32",
        "sources": [{"path": "bundled:breastmnist", "splits": ["train"]},
                    {"path": str(vol), "splits": ["train"], "slices": 3}]},
        "pretext": {"mask_ratio": 0.75, "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
        "data": {"crop_scale": [0.35, 1.0]}}))
    out = tmp_path / "bb"
    assert main(["backbone-pretrain", str(recipe), "-o", str(out)]) == 0
    assert "--set backbone.checkpoint=" in capsys.readouterr().out
    meta = json.loads((out / "backbone_meta.json").read_text())
    assert [(s["file"], s["splits"]) for s in meta["sources"]] == [("breastmnist.npz", {"train": 546}),
                                                                   ("vol.npz", {"train": 15})]
    assert meta["images"] == 561 and meta["steps"] == 2 * (561 // 64) and len(meta["loss_curve"]) == 2
    assert meta["arch_kwargs"]["embed_dim"] == 64 and meta["arch_kwargs"]["depth"] == 2
    assert (meta["decoder"]["dim"], meta["decoder"]["depth"], meta["decoder"]["heads"]) == (32, 1, 2)
    assert meta["mask_ratio"] == meta["decoder"]["mask_ratio"] == 0.75 and meta["crop_scale"] == [0.35, 1.0]
    assert meta["seconds"] > 0 and meta["device"].startswith("cpu")
    # what decides the arithmetic, so that "the same file again" can be checked against it
    assert meta["arithmetic"]["torch"] == torch.__version__ and meta["arithmetic"]["cpu"]
    assert meta["arithmetic"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert meta["revision"] == source_revision()  # the code's commit, None outside a git checkout
    assert all(np.isfinite(loss) for _, loss in meta["loss_curve"])
    # a backbone made before the pool keys were written gets them by resuming its folder, from the same pool only
    keys_file, encoder = out / meta["pool_keys"]["file"], (out / "backbone_encoder.safetensors").read_bytes()
    keys, stored = keys_file.read_bytes(), vol.read_bytes()
    keys_file.unlink()
    (out / "backbone_meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "pool_keys"}))
    write_volumes(vol, n=(4, 3, 3))  # another file at the source's path
    capsys.readouterr()
    assert main(["backbone-pretrain", "--resume", str(out)]) == 2
    assert "the recipe's pool is not the one the backbone was trained on" in capsys.readouterr().err
    vol.write_bytes(stored)
    assert main(["backbone-pretrain", "--resume", str(out)]) == 0
    assert "already finished; wrote the keys of its" in capsys.readouterr().err
    assert keys_file.read_bytes() == keys and (out / "backbone_encoder.safetensors").read_bytes() == encoder
    assert json.loads((out / "backbone_meta.json").read_text()) == meta  # trained nothing, changed nothing else
    assert main(["backbone-pretrain", "--resume", str(out)]) == 0
    assert "already finished" in capsys.readouterr().err and keys_file.read_bytes() == keys
    # the checkpoint is what `backbone.checkpoint` reads, decoder included, and the run records what it saw
    run = tmp_path / "run"
    sets = ["pretext.probe=false", "seeds=1", "data.limit=24", "pretext.epochs=1", "finetune.epochs=1",
            "pretext.batch_size=8",
            "finetune.batch_size=8", "threads=1", f"backbone.checkpoint={out / 'backbone_encoder.safetensors'}"]
    assert main(["run", "-o", str(run), *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["backbone"]["arch_kwargs"]["embed_dim"] == 64
    assert summary["backbone"]["trained_on"] == meta["sources"]
    assert summary["backbone_saw_this_data"] == ["train"]  # BreastMNIST's train split was in the pool
    # and image by image: the keys of the pool's images lie beside the checkpoint, one per non-constant image
    keys = (out / meta["pool_keys"]["file"]).read_bytes()
    assert len(keys) == 16 * meta["pool_keys"]["images"] and 546 <= meta["pool_keys"]["images"] <= 561
    assert summary["backbone_saw_images"] == {"image_size": 32, "train": [24, 24], "val": [0, 24], "test": [0, 24]}
    report = (run / "report.md").read_text()
    assert ("Checked image by image (pixel for pixel at 32 px), its pre-training pool holds 24 of 24 train, 0 of 24 "
            "val and 0 of 24 test images of this data.") in report
    assert summary["arms"]["tpp"]["runs"][0]["pretext"]["decoder"] == "pretrained"
    assert "saw the train split(s) of this very data file" in (run / "report.md").read_text()
    bb = build_backbone(BackboneConfig(checkpoint=str(out / "backbone_encoder.safetensors")))
    saved = load_file(out / "backbone_encoder.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in bb.model.state_dict().items())


def test_bundled_recipes_are_valid_and_never_read_breast_data_when_leaving_it_out():
    configs = bundled_configs()
    for name in ("backbone_b0_like", "backbone_loo_breast", "backbone_loo_breast_cpu"):
        full = load_config(configs[name])
        cfg = full.backbone_pretrain
        paths = [s.path for s in cfg.sources]
        assert all(s.splits == ["train"] for s in cfg.sources)
        if "loo" in name:
            assert not any("breast" in p or "busi" in p for p in paths)
        # MAE's recipe, as b0 was made: mask 0.75, decoder 128 wide, 4 blocks, 4 heads; crop 0.35-1 and
        # horizontal flips; bf16 autocast on a CUDA GPU
        p, d = full.pretext, full.data
        assert (p.mask_ratio, p.norm_pix_loss) == (0.75, True)
        assert (p.decoder_dim, p.decoder_depth, p.decoder_heads) == (128, 4, 4)
        assert (d.crop_scale, d.hflip, d.vflip, full.train.precision) == ((0.35, 1.0), True, False, "auto")
    b0_like = load_config(configs["backbone_b0_like"]).backbone_pretrain
    assert b0_like.epochs * (9364 // b0_like.batch_size) == 4302  # b0: 4,304 steps
    assert BREAST.is_file()


@pytest.mark.parametrize("old, new", [("mask_ratio=0.75", "pretext.mask_ratio"),
                                      ("norm_pix_loss=true", "pretext.norm_pix_loss"),
                                      ("decoder_dim=128", "pretext.decoder_dim"),
                                      ("decoder_depth=4", "pretext.decoder_depth"),
                                      ("crop_scale=[0.35, 1.0]", "data.crop_scale"),
                                      ("hflip=true", "data.hflip"),
                                      ("bf16=true", "train.precision")])
def test_keys_shared_with_other_sections_moved_there(old, new):
    key = "backbone_pretrain." + old.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^defaults \+ --set: {key} moved to {new}\b") as caught:
        load_config(None, ["backbone_pretrain." + old])
    assert "\n" not in str(caught.value)


class _Crash(Exception):
    pass


def test_interrupted_backbone_pretrain_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    import tppeft.engine.loop as loop_mod

    recipe = tmp_path / "bp.yaml"
    recipe.write_text(yaml.safe_dump({"threads": 1, "backbone_pretrain": {
        "arch_kwargs": TINY_VIT, "epochs": 3, "batch_size": 64, "save_dtype": "float32",
        "sources": [{"path": "bundled:breastmnist", "splits": ["val"]}]},
        "pretext": {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}}))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["backbone-pretrain", str(recipe), "-o", str(whole)]) == 0
    steps, grads = [0], loop_mod._grads_finite

    def crash_at_step_2(*a):
        steps[0] += 1
        if steps[0] == 2:  # inside epoch 2: the epoch-1 checkpoint is the one to resume from
            raise _Crash
        return grads(*a)

    monkeypatch.setattr(loop_mod, "_grads_finite", crash_at_step_2)
    with pytest.raises(_Crash):
        main(["backbone-pretrain", str(recipe), "-o", str(cut)])
    assert not (cut / "backbone_encoder.safetensors").exists()
    monkeypatch.setattr(loop_mod, "_grads_finite", grads)
    capsys.readouterr()
    assert main(["backbone-pretrain", "--resume", str(cut)]) == 0
    printed = capsys.readouterr()
    assert "resumed from" in printed.out + printed.err
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # epoch 1 from before the crash, once
    for part in ("encoder", "decoder"):
        a, b = load_file(whole / f"backbone_{part}.safetensors"), load_file(cut / f"backbone_{part}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = [json.loads((d / "backbone_meta.json").read_text()) for d in (whole, cut)]
    assert meta[0]["loss_curve"] == meta[1]["loss_curve"] and len(meta[1]["loss_curve"]) == 3
    assert not (cut / "checkpoints").exists()  # dropped once the checkpoint files are written
    # SIGTERM mid-epoch: a checkpoint, one line saying how to resume, exit code 143; resuming gives the same weights
    term, steps[0] = tmp_path / "term", 0

    def term_at_step_2(*a):
        steps[0] += 1
        if steps[0] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return grads(*a)
    monkeypatch.setattr(loop_mod, "_grads_finite", term_at_step_2)
    capsys.readouterr()
    assert main(["backbone-pretrain", str(recipe), "-o", str(term)]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"written; resume with: tppeft backbone-pretrain --resume {term}")
    monkeypatch.setattr(loop_mod, "_grads_finite", grads)
    # runtime keys (threads, checkpoint, log) may change on resume, as for tppeft run
    assert main(["backbone-pretrain", "--resume", str(term), "--set", "threads=2"]) == 0
    assert "resumed from" in capsys.readouterr().err
    a, b = load_file(whole / "backbone_encoder.safetensors"), load_file(term / "backbone_encoder.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)  # another thread count: equal up to rounding
