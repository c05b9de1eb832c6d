"""Every bad input through the command line: exit code 2, one error line naming the file or key and what was
expected, and no output folder left behind."""

from __future__ import annotations

import builtins
import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config, write_image_folder, write_medmnist, write_segmentation_npz

import tppeft.engine.loop as loop_mod
import tppeft.rundir as rundir_mod
from tppeft.cli import main
from tppeft.experiment.context import prepare_context
from tppeft.experiment.model import build_run_model

TINY = ["--set", "pretext.probe=false", "--set", "threads=1", "--set", "seeds=1", "--set", "data.limit=16", "--set",
        "pretext.epochs=1",
        "--set", "finetune.epochs=1", "--set", "pretext.batch_size=8", "--set", "finetune.batch_size=8"]


def _npz(tmp_path: Path, name: str, change: Callable[[dict], None]) -> str:
    arrays = dict(np.load(write_medmnist(tmp_path / "ok.npz")))
    change(arrays)
    np.savez(tmp_path / name, **arrays)
    return str(tmp_path / name)


def _data(name: str, change: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    """--set data.path=<a copy of a good file with ``change`` applied>."""
    return lambda t: ["data.path=" + _npz(t, name, change)]


def _edit(key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    return lambda a: a.__setitem__(key, fn(a[key]))


def _segmentation(name: str, change: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    """--set data.path=<a segmentation file with ``change`` applied>."""
    def make(t: Path) -> list[str]:
        arrays = dict(np.load(write_segmentation_npz(t / "seg.npz")))
        change(arrays)
        np.savez(t / name, **arrays)
        return ["data.path=" + str(t / name)]
    return make


def _folder(change: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """--set data.path=<a small image folder with ``change`` applied>."""
    def make(t: Path) -> list[str]:
        root = write_image_folder(t / "imgs")
        change(root)
        return ["data.path=" + str(root)]
    return make


def _manifest(rows: Callable[[list[str]], list[str]]) -> Callable[[Path], list[str]]:
    """--set data.path=<a CSV manifest of a small image folder's files: ``rows`` turns its lines into others>."""
    def make(t: Path) -> list[str]:
        root = write_image_folder(t / "imgs")
        lines = [f"{p.relative_to(root)},{p.parent.name},{p.parent.parent.name},{p.stem}"
                 for p in sorted(root.rglob("*.png"))]
        (root / "labels.csv").write_text("\n".join(["path,label,split,group", *rows(lines)]) + "\n")
        return ["data.path=" + str(root / "labels.csv")]
    return make


def _garbage(root: Path) -> None:
    for i in range(4):
        (root / "val" / "cat" / f"bad{i}.png").write_bytes(b"not an image")


def _nan_pixels(a: dict) -> None:
    x = a["val_images"].astype(np.float32) / 255
    x[0, 0, 0] = np.nan
    a["val_images"] = x


def _inf_pixels(a: dict) -> None:
    x = a["val_images"].astype(np.float32) / 255
    x[1, 2, 3] = np.inf
    a["val_images"] = x


def _empty_test(a: dict) -> None:
    a.update(test_images=a["test_images"][:0], test_labels=a["test_labels"][:0])


# (case, --set overrides built from tmp_path, what the error line must contain)
CASES = [
    ("missing data file", lambda t: ["data.path=" + str(t / "nope.npz")], ["nope.npz", "does not exist"]),
    ("not an npz", lambda t: ["data.path=" + _write(t / "junk.npz", b"not a zip")],
     ["junk.npz", "not an .npz archive", "not a zip"]),
    ("npz lacking keys", _data("k.npz", lambda a: a.pop("test_labels")), ["k.npz", "missing key", "test_labels"]),
    ("lengths differ", _data("len.npz", _edit("val_labels", lambda x: x[:-1])),
     ["len.npz", "val_images has 6 items but val_labels has 5"]),
    ("label out of range", _data("r.npz", _edit("test_labels", lambda x: x * 7)),
     ["r.npz", "'test_labels' hold class 7", "0..1"]),
    ("negative label", _data("neg.npz", _edit("val_labels", lambda x: x.astype(np.int8) - 1)),
     ["neg.npz", "'val_labels' holds negative labels"]),
    ("float labels", _data("f.npz", _edit("train_labels", lambda x: x * 1.0)),
     ["f.npz", "'train_labels' has dtype float64", "integer"]),
    ("one class", _data("one.npz", _edit("train_labels", lambda x: x * 0)), ["one.npz", "single class"]),
    ("empty split", _data("e.npz", _empty_test), ["e.npz", "split 'test' is empty"]),
    ("NaN pixels", _data("nan.npz", _nan_pixels), ["nan.npz", "'val_images'", "NaN"]),
    ("inf pixels", _data("inf.npz", _inf_pixels), ["inf.npz", "'val_images'", "infinite"]),
    ("int16 pixels", _data("i.npz", _edit("train_images", lambda x: x.astype(np.int16))),
     ["i.npz", "'train_images' has dtype int16", "uint8"]),
    ("object array", _data("o.npz", _edit("train_labels", lambda x: x.astype(object))), ["o.npz", "'train_labels'"]),
    ("masks of another shape", _segmentation("m.npz", _edit("masks", lambda x: x[:, :-2])),
     ["m.npz", "'masks' has shape (12, 30, 32)", "one (H,W) mask per image"]),
    ("masks of a float dtype", _segmentation("mf.npz", _edit("masks", lambda x: x * 1.0)),
     ["mf.npz", "'masks' has dtype float64", "integer class ids"]),
    ("segmentation split out of range", _segmentation("sp.npz", _edit("split", lambda x: x + 1)),
     ["sp.npz", "'split' must be", "0/1/2"]),
    ("unreadable images", _folder(_garbage), ["4 file(s) cannot be read as images", "val/cat/bad0.png", "and 1 more"]),
    ("empty class folder", _folder(lambda r: (r / "train" / "owl").mkdir()), ["empty class", "train/owl"]),
    ("ambiguous folder", _folder(lambda r: (r / "extra").mkdir()), ["ambiguous folder", "accepted layouts"]),
    ("manifest of missing files", _manifest(lambda lines: [*lines, "gone1.png,cat,train,x", "gone2.png,cat,train,y"]),
     ["labels.csv", "2 image file(s) do not exist: gone1.png, gone2.png"]),
    ("manifest label not in train", _manifest(lambda lines: [*lines, lines[-1].replace(",dog,", ",owl,")]),
     ["labels.csv", "not in the training split: 'owl' (val 1)"]),
    ("manifest group across splits", _manifest(lambda lines: [line.rsplit(",", 1)[0] + ",g" for line in lines]),
     ["labels.csv", "1 group(s) have images in more than one split: 'g' (train and val and test)"]),
    ("unknown key", lambda t: ["finetune.epoch=3"], ["unknown key 'finetune.epoch'"]),
    ("wrong type", lambda t: ["finetune.epochs=many"], ["'finetune.epochs'", "integer"]),
    ("negative epochs", lambda t: ["pretext.epochs=-1"], ["'pretext.epochs'", "greater than or equal to 0"]),
    ("zero fine-tuning epochs", lambda t: ["finetune.epochs=0"], ["'finetune.epochs'", "greater than 0"]),
    ("rank 0", lambda t: ["peft.r=0"], ["'peft.r'", "greater than 0"]),
    ("mask ratio 1.5", lambda t: ["pretext.mask_ratio=1.5"], ["'pretext.mask_ratio'", "less than 1"]),
    ("mask ratio 0", lambda t: ["pretext.mask_ratio=0"], ["'pretext.mask_ratio'", "greater than 0"]),
    ("unknown nonfinite policy", lambda t: ["train.on_nonfinite=ignore"], ["'train.on_nonfinite'", "'stop' or 'skip'"]),
    ("negative checkpoint interval", lambda t: ["checkpoint.every_steps=-2"], ["'checkpoint.every_steps'"]),
    ("timm name", lambda t: ["backbone.name=vit_nonexistent_xyz"], ["backbone.name 'vit_nonexistent_xyz'",
                                                                     "not a timm model"]),
    ("missing backbone file", lambda t: ["backbone.checkpoint=" + str(t / "enc.safetensors")],
     ["enc.safetensors", "does not exist"]),
    ("unknown peft method", lambda t: ["peft.method=lorax"], ["peft.method 'lorax' is unknown"]),
    ("unknown pretext", lambda t: ["pretext.method=jigsaw"], ["pretext.method 'jigsaw' is unknown"]),
    ("decoder the backbone lacks", lambda t: ["backbone.checkpoint=null", "backbone.name=vit_tiny_patch16_224",
                                              "data.image_size=32", "pretext.decoder=pretrained"],
     ["pretext.decoder=pretrained", "no MAE decoder"]),
    ("decoder a checkpoint lacks", lambda t: ["backbone.checkpoint=" + _encoder_only(t), "pretext.decoder=pretrained"],
     ["pretext.decoder=pretrained", "enc.pth' has no MAE decoder", "decoder_embed"]),
    ("DINO head a checkpoint lacks", lambda t: ["pretext.method=dino", "pretext.dino.head=pretrained"],
     ["pretext.dino.head=pretrained", "backbone.checkpoint 'bundled:b0' has no DINO head"]),
    ("unsupported checkpoint layout", lambda t: ["backbone.checkpoint=" + _torch_file(t, {"w": np.zeros(2)})],
     ["junk.pth': unsupported layout", "patch_embed.proj.weight"]),
    ("timm name that disagrees with the checkpoint", lambda t: ["backbone.checkpoint=" + _encoder_only(t),
                                                                 "backbone.name=vit_small_patch16_224"],
     ["backbone.name 'vit_small_patch16_224' (width 384", "disagrees with backbone.checkpoint", "(width 192"]),
]


def _torch_file(tmp_path: Path, state: dict) -> str:
    import torch

    torch.save({k: torch.as_tensor(v) for k, v in state.items()}, tmp_path / "junk.pth")
    return str(tmp_path / "junk.pth")


def _encoder_only(tmp_path: Path) -> str:
    """b0's encoder as a bare state dict (.pth): no decoder, no metadata."""
    import torch
    from safetensors.torch import load_file

    from tppeft.bundled import resolve

    torch.save(load_file(resolve("bundled:b0")), tmp_path / "enc.pth")
    return str(tmp_path / "enc.pth")


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _check(code: int, err: str, expected: list[str], out: Path | None = None) -> None:
    errors = [line for line in err.splitlines() if line.startswith("tppeft: error:")]
    assert code == 2, err
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err  # one line, the last one
    assert "Traceback" not in err
    for text in expected:
        assert text in errors[0], (text, errors[0])
    if out is not None:
        assert not out.exists(), f"{out} was left behind"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_no_output(case, tmp_path, capsys):
    _, make, expected = case
    out = tmp_path / "out"
    sets = [a for s in make(tmp_path) for a in ("--set", s)]
    code = main(["run", "-o", str(out), *TINY, *sets])
    _check(code, capsys.readouterr().err, expected, out)


def _forbid(monkeypatch, path: Path) -> None:
    """Reading ``path`` fails as a file without read permission does (chmod is no test when run as root)."""
    real = builtins.open

    def guarded(file, *args, **kwargs):
        if Path(str(file)).resolve() == path.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", guarded)


def test_files_without_read_permission(tmp_path, monkeypatch, capsys):
    data = write_medmnist(tmp_path / "locked.npz")
    _forbid(monkeypatch, data)
    code = main(["run", "-o", str(tmp_path / "a"), *TINY, "--set", f"data.path={data}"])
    _check(code, capsys.readouterr().err, ["locked.npz: cannot be read (Permission denied)"], tmp_path / "a")
    root = write_image_folder(tmp_path / "imgs")
    _forbid(monkeypatch, sorted((root / "val").rglob("*.png"))[0])
    code = main(["run", "-o", str(tmp_path / "b"), *TINY, "--set", f"data.path={root}"])
    _check(code, capsys.readouterr().err, ["1 file(s) cannot be read as images", "val/"], tmp_path / "b")


def test_bad_config_file_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("finetune:\n  epochs: 2\n  learning_rate: 0.1\n")
    out = tmp_path / "out"
    _check(main(["run", str(cfg), "-o", str(out)]), capsys.readouterr().err,
           ["exp.yaml", "unknown key 'finetune.learning_rate'"], out)
    cfg.write_text("finetune: [1, 2\n")
    _check(main(["run", str(cfg), "-o", str(out)]), capsys.readouterr().err, ["exp.yaml", "not valid YAML"], out)


@pytest.fixture(scope="module")
def saved_targets(tmp_path_factory) -> dict[str, Path]:
    """Target parameters of b0 saved by the tool itself: LoRA (r=8) and BitFit."""
    out = {}
    for method in ("lora", "bitfit"):
        cfg, _ = tiny_config(**{"peft.method": method})
        ctx = prepare_context(cfg, log=lambda s: None)
        run = build_run_model(ctx, seed=0)
        out[method] = tmp_path_factory.mktemp(method) / "target_params"
        run.method.save(run.handle, out[method])
    return out


def test_target_parameters_of_another_method_or_backbone(saved_targets, tmp_path, capsys):
    lora, bitfit = saved_targets["lora"], saved_targets["bitfit"]
    out = tmp_path / "out"
    _check(main(["finetune", "-o", str(out), "--init", str(bitfit), *TINY]), capsys.readouterr().err,
           [str(bitfit), "holds 'bitfit' target parameters, but peft.method is 'lora'"], out)
    _check(main(["finetune", "-o", str(out), "--init", str(lora), *TINY, "--set", "peft.r=4"]),
           capsys.readouterr().err, [str(lora), "saved peft.r=8 but this run uses peft.r=4"], out)
    # the same files into another backbone (ViT-Small, random weights)
    wider = ["--set", "backbone.checkpoint=null", "--set", "backbone.name=vit_small_patch16_224",
             "--set", "data.image_size=32"]
    _check(main(["finetune", "-o", str(out), "--init", str(lora), *TINY, *wider]),
           capsys.readouterr().err, [str(lora), "do not fit this run's backbone vit_small_patch16_224"], out)
    damaged = tmp_path / "damaged"
    shutil.copytree(lora, damaged)
    tensors = damaged / "target_params.safetensors"
    raw = bytearray(tensors.read_bytes())
    raw[-3] ^= 0xFF
    tensors.write_bytes(bytes(raw))
    _check(main(["finetune", "-o", str(out), "--init", str(damaged), *TINY]), capsys.readouterr().err,
           [str(tensors), "checksum does not match"], out)
    _check(main(["finetune", "-o", str(out), "--init", str(tmp_path / "nowhere"), *TINY]),
           capsys.readouterr().err, ["nowhere", "not a folder of saved target parameters"], out)


class Crash(BaseException):
    pass


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch) -> Path:
    """A run folder killed in the middle of its first fine-tuning (checkpoints after steps 1 and 2 exist)."""
    real, seen = loop_mod._grads_finite, {"n": 0}

    def crash_at_3(*a):
        seen["n"] += 1
        if seen["n"] == 3:
            raise Crash
        return real(*a)

    monkeypatch.setattr(loop_mod, "_grads_finite", crash_at_3)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        main(["run", "-o", str(out), *TINY, "--set", "finetune.epochs=2", "--set", "checkpoint.every_steps=1"])
    monkeypatch.setattr(loop_mod, "_grads_finite", real)
    return out


def test_corrupt_checkpoints_fall_back_or_fail_clearly(interrupted_run, tmp_path, capsys):
    ckpts = sorted((interrupted_run / "runs/baseline/seed0/checkpoints/finetune").glob("ckpt-*.safetensors"))
    assert len(ckpts) == 2
    backup = tmp_path / "backup"
    shutil.copytree(interrupted_run, backup)
    for path in ckpts:  # flip one byte near the end of each: the checksum no longer matches
        raw = bytearray(path.read_bytes())
        raw[-10] ^= 0xFF
        path.write_bytes(bytes(raw))
    code = main(["run", "--resume", str(interrupted_run)])
    _check(code, capsys.readouterr().err, [str(ckpts[0]), "checksum mismatch", "no good checkpoint is left"])
    # only the newest damaged: reported, and the previous one is used
    newest = backup / ckpts[-1].relative_to(interrupted_run)
    newest.write_bytes(newest.read_bytes()[:1000])
    assert main(["run", "--resume", str(backup), "--set", "threads=1"]) == 0
    err = capsys.readouterr().err
    assert f"{newest} is unreadable" in err and "resuming from the previous good checkpoint" in err
    assert json.loads((backup / "summary.json").read_text())["arms"]["tpp"]["n"] == 1


def test_resume_mistakes(interrupted_run, tmp_path, capsys):
    _check(main(["run", "--resume", str(tmp_path / "nothing")]), capsys.readouterr().err,
           ["nothing", "holds no tppeft run to resume"])
    _check(main(["run", "--resume", str(interrupted_run), "--set", "peft.r=4"]), capsys.readouterr().err,
           ["'peft.r' cannot change when resuming"])
    # backbone.sha256 is a check, not a setting: it may be given on resume, and a wrong digest is refused at once
    _check(main(["run", "--resume", str(interrupted_run), "--set", "backbone.sha256=0123456789ab"]),
           capsys.readouterr().err, ["backbone.sha256 asks for 0123456789ab", "it is another backbone"])
    _check(main(["run", "--resume", str(interrupted_run), "-o", str(tmp_path / "x")]), capsys.readouterr().err,
           ["drop --output"])
    # stopped before any run finished: `tppeft report` gives the count and how to finish it
    assert main(["report", str(interrupted_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("INTERIM: 0 of") and "resume a stopped one with tppeft run --resume" in out
    # an existing run is neither overwritten nor mixed into without --overwrite / --resume
    before = sorted(p.name for p in interrupted_run.iterdir())
    _check(main(["run", "-o", str(interrupted_run), *TINY]), capsys.readouterr().err,
           [str(interrupted_run), "--overwrite", "--resume"])
    assert sorted(p.name for p in interrupted_run.iterdir()) == before
    # a configuration edited between the kill and the resume is refused by the checkpoints' fingerprint
    cfg = interrupted_run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("lr: 0.001", "lr: 0.002"))
    _check(main(["run", "--resume", str(interrupted_run)]), capsys.readouterr().err,
           ["written by another configuration"])


def test_output_folder_that_cannot_be_used(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _check(main(["run", "-o", str(blocker / "run"), *TINY]), capsys.readouterr().err,
           [str(blocker), "is a file"])
    _check(main(["run", "-o", str(blocker), *TINY]), capsys.readouterr().err, [str(blocker), "is a file"])
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    _check(main(["run", "-o", str(other), "--overwrite", *TINY]), capsys.readouterr().err,
           [str(other), "holds no tppeft run"])
    assert (other / "notes.txt").is_file()

    class Usage:
        free = 5 * 2**20

    monkeypatch.setattr(rundir_mod.shutil, "disk_usage", lambda p: Usage)
    out = tmp_path / "out"
    _check(main(["run", "-o", str(out), *TINY]), capsys.readouterr().err,
           [str(out), "only 5 MiB free", "needs about"], out)
